"""Reloading the pipelines file in a running app (contract §10), through real HTTP.

The reload function is called directly here; tests/app/test_reload_process.py sends SIGHUP
to a real `turnstile serve`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pytest_aiohttp import AiohttpClient

import plugins.cache
import plugins.event_emit
from app import BuildContext, StepType, hookimpl
from app.main import create_app
from app.plugins import make_plugin_manager
from app.reload import Outcome, reload_pipelines
from app.settings import Settings, load_settings
from tests.fixtures import sample_plugin

Client = TestClient[web.Request, web.Application]

V1 = """\
[[pipelines]]
name = "get_thing"
route = "GET /things/{name}"
steps = [{ use = "tag", name = "v1" }, { use = "echo" }]

[[pipelines]]
name = "slowly"
route = "GET /slowly"
steps = [{ use = "tag", name = "v1" }, { use = "sleep", seconds = 0.5 }, { use = "echo" }]
"""

V2 = """\
[[pipelines]]
name = "get_thing"
route = "GET /things/{name}"
steps = [{ use = "tag", name = "v2" }, { use = "echo" }]

[[pipelines]]
name = "slowly"
route = "GET /slowly"
steps = [{ use = "tag", name = "v2" }, { use = "sleep", seconds = 0.5 }, { use = "echo" }]

[[pipelines]]
name = "get_gadget"
route = "GET /gadgets/{id:int}"
steps = [{ use = "echo" }]
"""


@attrs.define
class Running:
    client: Client
    path: Path

    def write(self, text: str) -> str:
        """Write the pipelines file; its short digest, as /readyz shows it."""
        self.path.write_text(text)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    async def reload(self, text: str) -> Outcome:
        self.write(text)
        return await reload_pipelines(self.client.app)

    async def ready(self) -> dict[str, Any]:
        resp = await self.client.get("/readyz")
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


@pytest.fixture
async def running(aiohttp_client: AiohttpClient, tmp_path: Path) -> Running:
    path = tmp_path / "pipelines.toml"
    path.write_text(V1)
    settings: Settings = attrs.evolve(load_settings({}), pipelines_file=path, var_dir=tmp_path / "var")
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, plugins.cache, plugins.event_emit])
    return Running(await aiohttp_client(create_app(settings, pm=pm)), path)


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("turnstile_config_reloads_total", {"outcome": outcome}) or 0.0


async def trail(client: Client, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return resp.headers["X-Trail"]


async def test_a_new_route_appears_and_a_removed_one_answers_404(running: Running) -> None:
    client = running.client
    before_ok = reloads("ok")
    v1_hash = (await running.ready())["pipelines"]["sha256"]
    assert v1_hash == hashlib.sha256(V1.encode()).hexdigest()[:12]
    assert (await client.get("/gadgets/7")).status == 404

    v3 = V2.replace('[[pipelines]]\nname = "slowly"', '[[pipelines]]\nname = "gone"').replace(
        "GET /slowly", "GET /gone")
    digest = running.write(v3)
    assert await reload_pipelines(client.app) is Outcome.OK

    assert await trail(client, "/things/a") == "out:v2"
    assert (await (await client.get("/gadgets/7")).json())["params"] == {"id": "7"}
    gone = await client.get("/slowly", headers={"X-Request-ID": "after-reload"})
    assert gone.status == 404
    assert gone.content_type == "application/problem+json"
    problem = await gone.json()
    assert (problem["status"], problem["detail"], problem["request_id"]) == (
        404, "No route matches this path.", "after-reload")
    assert (await client.get("/gadgets/0123")).status == 404  # typed parameters still match one spelling
    assert (await running.ready())["pipelines"]["sha256"] == digest != v1_hash
    assert reloads("ok") == before_ok + 1


async def test_openapi_describes_the_reloaded_routes(running: Running) -> None:
    before = await (await running.client.get("/api/docs/swagger.json")).json()
    assert "/gadgets/{id}" not in before["paths"]
    assert await running.reload(V2) is Outcome.OK
    after = await (await running.client.get("/api/docs/swagger.json")).json()
    assert after["paths"]["/gadgets/{id}"]["get"]["operationId"] == "get_gadget"
    assert {"/things/{name}", "/healthz", "/readyz", "/metrics"} <= set(after["paths"])


async def test_the_events_document_follows_the_reloaded_routes(running: Running) -> None:
    before = await (await running.client.get("/api/docs/asyncapi.json")).json()
    assert "thing.seen" not in str(before["channels"])
    emitting = V1.replace('steps = [{ use = "tag", name = "v1" }, { use = "echo" }]',
                          'steps = [{ use = "event-emit", event = "thing.seen" }, { use = "echo" }]', 1)
    assert await running.reload(emitting) is Outcome.OK
    after = await (await running.client.get("/api/docs/asyncapi.json")).json()
    assert "thing.seen" in str(after["channels"])


async def test_405_and_its_allow_header_come_from_the_new_routes(running: Running) -> None:
    assert await running.reload(V1.replace("GET /things/{name}", "POST /things/{name}")) is Outcome.OK
    resp = await running.client.get("/things/a")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["detail"] == "This route does not accept that method."
    # Operational routes are untouched, and their own 405 too.
    assert (await running.client.get("/healthz")).status == 200
    assert (await running.client.delete("/healthz")).headers["Allow"] == "GET,HEAD"


async def test_a_broken_file_changes_nothing_and_logs_its_errors(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    client = running.client
    before_invalid = reloads("invalid")
    ready = await running.ready()
    broken = V2.replace('{ use = "tag", name = "v2" }', '{ use = "tga", name = "v2" }', 1)
    with caplog.at_level(logging.INFO, logger="turnstile.reload"):
        assert await running.reload(broken) is Outcome.INVALID
    lines = [r.getMessage() for r in caplog.records if r.name == "turnstile.reload"]
    assert lines[0].startswith("reload refused: 1 error(s); still serving")
    assert lines[1] == (f"{running.path}:4: pipeline 'get_thing', step 1: unknown step type 'tga' "
                        "(known: answer, boom, cache, cache-invalidate, echo, event-emit, silent, sleep, tag)")
    assert await trail(client, "/things/a") == "out:v1"
    assert (await client.get("/gadgets/7")).status == 404
    after = await running.ready()
    assert after["pipelines"] == ready["pipelines"]
    assert reloads("invalid") == before_invalid + 1
    swagger = await (await client.get("/api/docs/swagger.json")).json()
    assert "/gadgets/{id}" not in swagger["paths"]


async def test_an_unreadable_file_changes_nothing(running: Running) -> None:
    running.path.unlink()
    assert await reload_pipelines(running.client.app) is Outcome.INVALID
    assert await trail(running.client, "/things/a") == "out:v1"


async def test_requests_in_flight_finish_on_the_old_chain(running: Running) -> None:
    client = running.client
    in_flight = asyncio.create_task(client.get("/slowly"))
    await asyncio.sleep(0.2)  # the request is inside its sleep step now
    assert await running.reload(V2) is Outcome.OK
    assert await trail(client, "/things/a") == "out:v2"
    old = await in_flight
    assert old.status == 200
    assert old.headers["X-Trail"] == "out:v1"
    assert await trail(client, "/slowly") == "out:v2"


async def test_reloads_under_load_answer_no_request_with_an_error(running: Running) -> None:
    client = running.client
    statuses: list[int] = []
    trails: set[str] = set()
    stop = asyncio.Event()

    async def hammer() -> None:
        while not stop.is_set():
            resp = await client.get("/things/a")
            statuses.append(resp.status)
            trails.add(resp.headers.get("X-Trail", ""))
            await resp.read()

    workers = [asyncio.create_task(hammer()) for _ in range(8)]
    for i in range(10):
        await asyncio.sleep(0.05)
        assert await running.reload(V2 if i % 2 == 0 else V1) is Outcome.OK
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*workers)
    assert len(statuses) > 100
    assert set(statuses) == {200}
    assert trails == {"out:v1", "out:v2"}


SUBSCRIPTION = """
[[subscriptions]]
name = "drop_things"
queue = "test.things"
bindings = ["thing.changed"]
steps = [{ use = "cache-invalidate", keys = ["thing:{id}"] }]
"""


async def test_subscriptions_are_kept_and_a_change_to_them_is_logged(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="turnstile.reload"):
        assert await running.reload(V2) is Outcome.OK
        assert await running.reload(V2 + SUBSCRIPTION) is Outcome.OK
    lines = [r.getMessage() for r in caplog.records if r.name == "turnstile.reload"]
    assert lines[0].endswith("3 pipelines, 0 upstreams")
    assert len(lines) == 3
    assert lines[2] == (f"{running.path} changes its subscriptions: a reload keeps the running ones, "
                        "restart to apply them")


@attrs.frozen(kw_only=True)
class FragileConfig:
    """`{ use = "fragile", fail = true }`: a step whose build fails (a plugin's bug)."""

    fail: bool = False


class FragilePlugin:
    @hookimpl
    def register_steps(self) -> list[StepType[Any]]:
        def build(config: FragileConfig, ctx: BuildContext) -> Any:
            if config.fail:
                msg = "cannot build"
                raise RuntimeError(msg)
            return sample_plugin.TagStep(sample_plugin.TagConfig(name="fragile"))

        return [StepType(name="fragile", config_cls=FragileConfig, build=build)]


async def test_a_step_that_fails_to_build_changes_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text(V1)
    settings: Settings = attrs.evolve(load_settings({}), pipelines_file=path, var_dir=tmp_path / "var")
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, FragilePlugin()])
    running = Running(await aiohttp_client(create_app(settings, pm=pm)), path)
    broken = V2.replace('{ use = "tag", name = "v2" }', '{ use = "fragile", fail = true }', 1)
    with caplog.at_level(logging.ERROR):
        assert await running.reload(broken) is Outcome.INVALID
    assert "reload refused: 1 error(s)" in caplog.text
    # The file, the line, the step and the plugin, then the plugin's own traceback.
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "fragile" in x)) + 1
    assert f"{path}:{line}: pipeline " in caplog.text
    assert "(fragile): plugin " in caplog.text
    assert "could not build it: RuntimeError: cannot build" in caplog.text
    assert any(r.exc_info for r in caplog.records if r.name == "turnstile.plugins")
    assert await trail(running.client, "/things/a") == "out:v1"
    assert (await running.client.get("/gadgets/7")).status == 404
