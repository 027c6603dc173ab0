from __future__ import annotations

import asyncio
import functools
import gc
from typing import Any

import pytest

from app.clients.singleflight import SingleFlight


async def test_concurrent_callers_share_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    callers = [asyncio.create_task(flight.do("user:1", fetch)) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(flight) == 1
    release.set()

    assert await asyncio.gather(*callers) == [42] * 50
    assert calls == 1
    assert len(flight) == 0


async def test_different_keys_run_separately() -> None:
    flight: SingleFlight[int, int] = SingleFlight()

    async def double(n: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * n

    results = await asyncio.gather(*(flight.do(n % 3, functools.partial(double, n % 3)) for n in range(9)))
    assert results == [0, 2, 4] * 3


async def test_an_exception_reaches_every_caller_and_the_next_call_runs_again() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise LookupError("upstream says no")

    results = await asyncio.gather(*(flight.do("k", failing) for _ in range(10)), return_exceptions=True)

    assert calls == 1
    assert all(isinstance(r, LookupError) and str(r) == "upstream says no" for r in results)
    with pytest.raises(LookupError):
        await flight.do("k", failing)
    assert calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_call_for_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    release = asyncio.Event()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "value"

    first = asyncio.create_task(flight.do("k", fetch))
    others = [asyncio.create_task(flight.do("k", fetch)) for _ in range(3)]
    await asyncio.sleep(0)

    first.cancel()
    await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*others) == ["value"] * 3
    assert first.cancelled()
    assert calls == 1


async def test_the_call_finishes_even_when_every_caller_left() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    finished = asyncio.Event()
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))

    async def fetch() -> str:
        await asyncio.sleep(0.01)
        finished.set()
        raise RuntimeError("nobody is listening")  # must not be logged as never retrieved

    caller = asyncio.create_task(flight.do("k", fetch))
    await asyncio.sleep(0)
    caller.cancel()

    await asyncio.wait_for(finished.wait(), 1)
    await asyncio.sleep(0)
    assert len(flight) == 0
    gc.collect()
    assert reported == []
