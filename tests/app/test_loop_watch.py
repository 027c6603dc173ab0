"""Code that holds the event loop shows in `turnstile_event_loop_lag_seconds` and in a warning
that names it, taken while it held the loop (app/loop_watch.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app import hookimpl
from app.loop_watch import LoopWatch
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.fixtures import sample_plugin


def lag_count() -> float:
    return REGISTRY.get_sample_value("turnstile_event_loop_lag_seconds_count") or 0.0


def lags_over(seconds: float) -> float:
    below = REGISTRY.get_sample_value("turnstile_event_loop_lag_seconds_bucket", {"le": str(seconds)}) or 0.0
    return lag_count() - below


async def a_rule_that_blocks() -> float:
    time.sleep(0.5)  # noqa: ASYNC251  # what is being caught
    return time.time()


async def test_a_stall_is_measured_and_the_code_holding_the_loop_named(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(blocked_after_s=0.15)
    watch.start()
    try:
        over_before = lags_over(0.25)
        await asyncio.sleep(0.3)  # a few ticks of a healthy loop
        released = await a_rule_that_blocks()
        await asyncio.sleep(0.3)  # the tick that comes late
    finally:
        watch.stop()

    assert lags_over(0.25) >= over_before + 1
    [warning] = [r for r in caplog.records if r.name == "turnstile.loop"]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert message.startswith("the event loop has been held for 0.")
    assert warning.created < released  # logged while the loop was held: a loop held for good is named too
    assert "a_rule_that_blocks" in message
    assert "time.sleep(0.5)" in message


async def test_a_healthy_loop_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(blocked_after_s=0.5)  # the default
    watch.start()
    try:
        for _ in range(20):
            await asyncio.sleep(0.03)
    finally:
        watch.stop()
    assert not [r for r in caplog.records if r.name == "turnstile.loop"]


class BlockingRule:
    @hookimpl
    def check_request(self, pipeline: Any) -> None:
        if pipeline.name == "get_thing":
            time.sleep(0.4)  # a blocking client call in a team's rule


async def test_a_team_s_blocking_rule_is_named_by_the_running_service(
    turnstile: StartService, caplog: pytest.LogCaptureFixture,
) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, BlockingRule()], entrypoints=False,
                              env={"TURNSTILE_LOOP_BLOCKED_S": "0.1"})
    assert (await service.client.get("/things/a")).status == 200
    [warning] = [r for r in caplog.records if r.name == "turnstile.loop"]
    assert "in check_request\n    time.sleep(0.4)" in warning.getMessage()
    metrics = await (await service.client.get("/metrics")).text()
    assert "turnstile_event_loop_lag_seconds_count" in metrics
