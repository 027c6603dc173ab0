"""`complete_despite_cancellation`: the work finishes whatever happens to its caller, and a
cancelled caller unwinds only once the work is done, so the steps around it see what it did."""

from __future__ import annotations

import asyncio

import pytest

from app import complete_despite_cancellation


async def test_a_cancelled_caller_waits_for_the_work_then_is_cancelled() -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def work() -> str:
        await release.wait()
        seen.append("work done")
        return "result"

    async def caller() -> None:
        try:
            await complete_despite_cancellation(work())
        except asyncio.CancelledError:
            seen.append("caller unwinds")
            raise

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the work
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["work done", "caller unwinds"]


async def test_a_second_cancellation_stops_the_wait_not_the_work() -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def work() -> None:
        await release.wait()
        finished.set()

    task = asyncio.create_task(complete_despite_cancellation(work()))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not finished.is_set()
    release.set()
    await asyncio.wait_for(finished.wait(), 1)


async def test_the_work_s_failure_reaches_a_caller_that_was_not_cancelled() -> None:
    async def work() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await complete_despite_cancellation(work())


async def test_a_cancelled_caller_is_cancelled_even_when_the_work_fails() -> None:
    release = asyncio.Event()

    async def work() -> None:
        await release.wait()
        raise ValueError("broken")

    task = asyncio.create_task(complete_despite_cancellation(work()))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
