"""Calling may-be-async hooks: one implementation at a time, in order, stopping at the first
failure with nothing left un-awaited; lifecycle hooks get the arguments they declare."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.errors import InternalError
from app.hookspecs import hookimpl
from app.keys import settings_key
from app.main import create_app
from app.plugins import call_all, call_chain, has_implementations, make_plugin_manager
from app.settings import Settings
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.app.test_http import assert_problem
from tests.fixtures import sample_plugin


class Recorder:
    """Three check_request implementations registered in one plugin manager, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []


def _plugins(recorder: Recorder, *, fail_in_middle: bool) -> list[object]:
    class First:
        @hookimpl
        async def check_request(self, body: Any) -> None:
            recorder.calls.append("first")

    class Middle:
        @hookimpl
        async def check_request(self, body: Any) -> None:
            recorder.calls.append("middle")
            if fail_in_middle:
                msg = "middle refuses"
                raise ValueError(msg)

    class Last:
        @hookimpl
        def check_request(self, body: Any) -> str:
            recorder.calls.append("last (sync)")
            return "last result"

    # Turnstile calls plugins in the order they were registered (pluggy alone would not).
    return [First(), Middle(), Last()]


async def test_call_all_awaits_each_in_order_and_keeps_non_none_results() -> None:
    recorder = Recorder()
    pm = make_plugin_manager(entrypoints=False, extra=_plugins(recorder, fail_in_middle=False))
    results = await call_all(pm.hook.check_request, request=None, pipeline=None, actor=None, body={})
    assert recorder.calls == ["first", "middle", "last (sync)"]
    assert results == ["last result"]


async def test_call_all_stops_at_the_first_failure_leaving_no_coroutine_unawaited() -> None:
    # With filterwarnings=error, a coroutine never awaited would fail this test (RuntimeWarning),
    # and a sync implementation after the failing one must not have run.
    recorder = Recorder()
    pm = make_plugin_manager(entrypoints=False, extra=_plugins(recorder, fail_in_middle=True))
    with pytest.raises(ValueError, match="middle refuses") as failed:
        await call_all(pm.hook.check_request, request=None, pipeline=None, actor=None, body={})
    assert recorder.calls == ["first", "middle"]
    # The traceback logged for it names the hook and the plugin, not only the line.
    [middle] = [impl.plugin_name for impl in pm.hook.check_request.get_hookimpls()
                if type(impl.plugin).__name__ == "Middle"]
    assert failed.value.__notes__ == [f"(in hook check_request of plugin {middle})"]


async def test_call_chain_names_the_plugin_whose_value_its_check_refuses(caplog: pytest.LogCaptureFixture) -> None:
    class Keeps:
        @hookimpl
        def transform_request(self, body: dict[str, Any]) -> dict[str, Any]:
            return {**body, "kept": True}

    class Breaks:
        @hookimpl
        def transform_request(self, body: dict[str, Any]) -> dict[str, Any]:
            return {"name": 5}

    pm = make_plugin_manager(entrypoints=False, extra=[Keeps(), Breaks()])
    pm.register(Breaks(), name="team_breaks")  # a name to find in the log, as an entry point's
    pm.unregister(next(p for p in pm.get_plugins() if isinstance(p, Breaks) and pm.get_name(p) != "team_breaks"))

    def problem(value: Any) -> str | None:
        return None if isinstance(value.get("name", ""), str) else "name is not a string"

    with pytest.raises(InternalError):
        await call_chain(pm.hook.transform_request, "body", {"name": "a"}, expect=dict, check=problem,
                         request=None, pipeline=None)
    (record,) = [r for r in caplog.records if r.name == "turnstile.plugins"]
    assert record.getMessage() == (
        "hook transform_request of plugin team_breaks returned what its body cannot be: name is not a string"
    )


def test_has_implementations_ignores_nothing_but_absence() -> None:
    pm = make_plugin_manager(entrypoints=False, extra=[])
    assert not has_implementations(pm.hook.check_request)
    pm = make_plugin_manager(entrypoints=False, extra=_plugins(Recorder(), fail_in_middle=False))
    assert has_implementations(pm.hook.check_request)


async def test_startup_and_shutdown_hooks_get_only_the_arguments_they_declare(core_settings: Settings) -> None:
    seen: list[str] = []

    class NoArguments:
        @hookimpl
        async def startup(self) -> None:
            seen.append("startup()")

        @hookimpl
        def shutdown(self) -> None:
            seen.append("shutdown()")

    class WithApp:
        @hookimpl
        def shutdown(self, app: web.Application) -> None:
            seen.append(f"shutdown(app) {isinstance(app, web.Application)}")

    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, NoArguments(), WithApp()])
    async with TestClient(TestServer(create_app(core_settings, pm=pm))) as client:
        assert (await client.get("/healthz")).status == 200
    assert seen == ["startup()", "shutdown(app) True", "shutdown()"]


async def test_tryfirst_and_trylast_move_an_implementation() -> None:
    calls: list[str] = []

    class Late:
        @hookimpl(trylast=True)
        def check_request(self) -> None:
            calls.append("late")

    class Plain:
        @hookimpl
        def check_request(self) -> None:
            calls.append("plain")

    class Early:
        @hookimpl(tryfirst=True)
        def check_request(self) -> None:
            calls.append("early")

    pm = make_plugin_manager(entrypoints=False, extra=[Late(), Plain(), Early()])
    await call_all(pm.hook.check_request, request=None, pipeline=None, actor=None, body={})
    assert calls == ["early", "plain", "late"]


def test_the_built_ins_are_loaded_first() -> None:
    pm = make_plugin_manager(extra=[sample_plugin])
    names = [name for name, _ in pm.list_name_plugin()]
    built_ins = {"accounts", "auth", "cache", "data-fetch", "event-emit", "mail", "rate-limit", "users"}
    assert set(names[: len(built_ins)]) == built_ins


class Hangs:
    """A rule waiting on a service of its own that never answers."""

    @hookimpl
    async def check_request(self, pipeline: Any) -> None:
        if pipeline.name == "echo_widget":
            await asyncio.Event().wait()


class OwnTimeout:
    """A rule whose own client gives up: its TimeoutError is its failure, not the deadline's."""

    @hookimpl
    async def check_request(self, pipeline: Any) -> None:
        if pipeline.name == "echo_widget":
            raise TimeoutError


async def test_an_async_hook_that_never_returns_answers_504_at_the_deadline(
    turnstile: StartService, caplog: pytest.LogCaptureFixture,
) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, Hangs()], entrypoints=False,
                              env={"TURNSTILE_HOOK_TIMEOUT_S": "0.2"})

    resp = await service.client.post("/widgets/1", json={"name": "w", "size": 2})

    problem = await assert_problem(resp, 504)
    assert problem["detail"] == "A business rule did not answer in time; try again later."
    assert any("hook check_request of plugin" in r.getMessage() and "0.2 s" in r.getMessage()
               for r in caplog.records)
    # The other routes never waited for it.
    assert (await service.client.get("/things/a")).status == 200


async def test_a_hook_s_own_timeout_error_is_its_failure_not_the_deadline(turnstile: StartService) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, OwnTimeout()], entrypoints=False)
    await assert_problem(await service.client.post("/widgets/1", json={"name": "w", "size": 2}), 500)


async def test_a_shutdown_hook_that_hangs_leaves_the_others_running(core_settings: Settings) -> None:
    seen: list[str] = []

    class HangsOnShutdown:
        @hookimpl
        async def shutdown(self) -> None:
            await asyncio.Event().wait()

    class ClosesAfter:
        @hookimpl
        def shutdown(self) -> None:
            seen.append("closed")

    settings = attrs.evolve(core_settings, hook_timeout_s=0.2)
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, ClosesAfter(), HangsOnShutdown()])
    async with TestClient(TestServer(create_app(settings, pm=pm))) as client:
        assert (await client.get("/healthz")).status == 200
    assert seen == ["closed"]


async def test_a_slow_startup_hook_is_given_its_time(core_settings: Settings) -> None:
    # A warm-up longer than the hook deadline is a slow start, not a failure: no deadline there.
    class SlowStartup:
        @hookimpl
        async def startup(self) -> str:
            await asyncio.sleep(0.4)
            return "warm"

    app = web.Application()
    app[settings_key] = attrs.evolve(core_settings, hook_timeout_s=0.1)
    pm = make_plugin_manager(entrypoints=False, extra=[SlowStartup()])
    assert await call_all(pm.hook.startup, app=app) == ["warm"]
