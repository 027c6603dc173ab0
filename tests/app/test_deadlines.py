"""Every pipeline's and plugin route's request has a deadline (TURNSTILE_REQUEST_TIMEOUT_S): a step
that never returns answers 504 once it has run out, and frees what it held even when its client
has gone (app/deadlines.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from app import PluginRoute, hookimpl
from app.deadlines import RequestDeadlines, request_deadlines_key
from app.testing import StartService
from tests.app.test_http import assert_problem
from tests.fixtures import sample_plugin

PIPELINES = """
[[pipelines]]
name = "hangs"
route = "GET /hangs"
steps = [{ use = "sleep", seconds = 3600 }, { use = "echo" }]

[[pipelines]]
name = "quick"
route = "GET /quick"
steps = [{ use = "echo" }]
"""
TIMEOUT = {"TURNSTILE_REQUEST_TIMEOUT_S": "0.3", "TURNSTILE_BODY_TIMEOUT_S": "0.2"}


async def _hangs(request: web.Request) -> web.Response:
    await asyncio.Event().wait()
    raise AssertionError


class HangingRoute:
    @hookimpl
    def register_routes(self) -> list[PluginRoute]:
        return [PluginRoute(path="/.well-known/hangs", handler=_hangs, name="route_hangs", summary="Never answers",
                            responses={"200": {"description": "Never"}})]


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    path = tmp_path / "deadlines.toml"
    path.write_text(PIPELINES)
    return path


async def test_a_step_that_never_returns_answers_504_at_the_deadline(
    turnstile: StartService, pipelines: Path,
) -> None:
    service = await turnstile(pipelines, plugins=[sample_plugin], entrypoints=False, env=TIMEOUT)
    client = service.client

    resp = await client.get("/hangs", headers={"X-Request-ID": "stuck-1"})

    problem = await assert_problem(resp, 504)
    assert problem["detail"] == "The request did not complete within 0.3 s."
    assert problem["request_id"] == "stuck-1"
    assert (await client.get("/quick")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'turnstile_requests_total{method="GET",pipeline="hangs",status="504"} 1.0' in metrics
    assert not service.app[request_deadlines_key]._running


async def test_a_plugin_route_that_never_returns_answers_504(turnstile: StartService, pipelines: Path) -> None:
    service = await turnstile(pipelines, plugins=[sample_plugin, HangingRoute()], entrypoints=False, env=TIMEOUT)
    await assert_problem(await service.client.get("/.well-known/hangs"), 504)


async def test_a_request_whose_client_went_away_is_still_ended_at_the_deadline(
    turnstile: StartService, pipelines: Path,
) -> None:
    # aiohttp lets a handler run on after its client has gone: without the deadline, each such
    # request would hold its task (and whatever it awaits) for the life of the process.
    service = await turnstile(pipelines, plugins=[sample_plugin], entrypoints=False, env=TIMEOUT)
    # As `turnstile serve` runs it (aiohttp's default); the test server cancels on disconnect.
    runner = service.client.server.runner
    assert runner is not None
    server = runner.server
    assert server is not None
    server.handler_cancellation = False
    deadlines = service.app[request_deadlines_key]
    for _ in range(3):
        with pytest.raises(asyncio.TimeoutError):
            await service.client.get("/hangs", timeout=aiohttp.ClientTimeout(total=0.05))
    assert len(deadlines._running) == 3

    for _ in range(100):
        if not deadlines._running:
            break
        await asyncio.sleep(0.05)
    assert not deadlines._running


async def test_the_deadline_is_the_request_s_own() -> None:
    # Each request's clock starts when it does: a request that started just now is not cut short
    # by the sweep that ends an older one.
    deadlines = RequestDeadlines(0.4)
    deadlines.start()
    try:
        async def request() -> str:
            task = deadlines.watch()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                return "timed out" if deadlines.ran_out(task) else "cancelled"
            finally:
                deadlines.ended(task)
            return "answered"

        old = asyncio.create_task(request())
        await asyncio.sleep(0.25)
        young = asyncio.create_task(request())
        assert await old == "timed out"
        assert not young.done()
        assert await young == "timed out"
    finally:
        deadlines.stop()


async def test_a_cancellation_not_of_the_deadline_s_making_goes_on() -> None:
    deadlines = RequestDeadlines(60)
    seen: list[bool] = []

    async def request() -> None:
        task = deadlines.watch()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append(deadlines.ran_out(task))
            raise
        finally:
            deadlines.ended(task)

    task = asyncio.create_task(request())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]
    assert not deadlines._running
