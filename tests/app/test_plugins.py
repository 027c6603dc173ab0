"""The plugin manager: tracing, disabling, modules by name, and the access log line."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.plugins import make_plugin_manager
from app.settings import Settings
from tests.fixtures import sample_plugin

Client = TestClient[web.Request, web.Application]


def test_built_in_plugins_load_through_entry_points() -> None:
    names = {name for name, _ in make_plugin_manager().list_name_plugin()}
    assert {"auth", "rate-limit", "cache", "data-fetch", "event-emit", "users"} <= names


def test_disabled_plugins_are_not_loaded() -> None:
    pm = make_plugin_manager(disabled=["cache", "users"])
    names = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    assert "cache" not in names
    assert "users" not in names
    assert "auth" in names


def test_plugin_modules_by_name() -> None:
    pm = make_plugin_manager(entrypoints=False, modules=["tests.fixtures.sample_plugin"])
    assert pm.get_plugin("tests.fixtures.sample_plugin") is sample_plugin


async def test_trace_hooks_logs_every_hook_call(caplog: pytest.LogCaptureFixture) -> None:
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin], trace=True)
    with caplog.at_level(logging.INFO, logger="turnstile.hooks"):
        pm.hook.register_models()
    assert any("hook register_models" in r.getMessage() for r in caplog.records)
    make_plugin_manager(entrypoints=False, trace=False)  # tracing off again for the other tests


async def test_one_access_log_line_per_request(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="turnstile.access"):
        await client.get("/things/a", headers={"X-Request-ID": "log-me"})
    lines = [r for r in caplog.records if r.name == "turnstile.access"]
    assert len(lines) == 1
    record = lines[0]
    assert record.__dict__["pipeline"] == "get_thing"
    assert record.__dict__["status"] == 200
    assert record.__dict__["duration_ms"] >= 0
    assert "GET /things/a 200 pipeline=get_thing" in record.getMessage()


def test_request_id_is_on_every_log_line_of_a_request(core_settings: Settings) -> None:
    from app.logs import JsonFormatter, RequestIdFilter
    from app.middlewares.request_id import current_request_id

    token = current_request_id.set("rid-7")
    try:
        record = logging.makeLogRecord({"msg": "hello", "name": "x", "levelname": "INFO"})
        RequestIdFilter().filter(record)
        assert json.loads(JsonFormatter().format(record))["request_id"] == "rid-7"
    finally:
        current_request_id.reset(token)
