"""Waiting for a dependency: tries again until it answers, gives up after its bound, stops on
stop, and tells an outage in one line and its end in another, however many messages wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from app.clients.amqp.waits import DependencyWaits, WaitedTooLong, WaitInterrupted

LOGGER = "turnstile.amqp.consumer"


class Down(Exception):
    pass


def waits(max_wait_s: float = 5.0) -> DependencyWaits:
    return DependencyWaits("q", lambda exc: isinstance(exc, Down), max_wait_s=max_wait_s, base_s=0.01, max_s=0.01)


def failing(times: int, exc: Exception | None = None) -> tuple[list[int], Callable[[], Awaitable[None]]]:
    calls: list[int] = []

    async def attempt() -> None:
        calls.append(1)
        if len(calls) <= times:
            raise exc or Down("Redis is down")

    return calls, attempt


async def test_tries_again_until_the_dependency_answers(stopping: asyncio.Future[None]) -> None:
    calls, attempt = failing(4)
    await waits().run(attempt, stopping)
    assert len(calls) == 5


async def test_another_failure_is_raised_at_once(stopping: asyncio.Future[None]) -> None:
    calls, attempt = failing(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await waits().run(attempt, stopping)
    assert len(calls) == 1


async def test_gives_up_after_its_bound(stopping: asyncio.Future[None]) -> None:
    _calls, attempt = failing(10**6)
    with pytest.raises(WaitedTooLong, match="stayed down"):
        await waits(max_wait_s=0.1).run(attempt, stopping)


async def test_no_wait_at_all_leaves_the_failure_to_the_retries(stopping: asyncio.Future[None]) -> None:
    calls, attempt = failing(1)
    with pytest.raises(Down):
        await waits(max_wait_s=0).run(attempt, stopping)
    assert len(calls) == 1


async def test_stop_interrupts_a_wait(stopping: asyncio.Future[None]) -> None:
    _calls, attempt = failing(10**6)
    running = asyncio.create_task(waits().run(attempt, stopping))
    await asyncio.sleep(0.05)
    stopping.set_result(None)
    with pytest.raises(WaitInterrupted):
        await running


async def test_an_outage_is_one_warning_and_one_info_for_all_waiting_messages(
    stopping: asyncio.Future[None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    shared = waits()
    attempts = [failing(n)[1] for n in (3, 5, 7)]
    await asyncio.gather(*(shared.run(a, stopping) for a in attempts))
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.WARNING, logging.INFO]


@pytest.fixture
async def stopping() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()
