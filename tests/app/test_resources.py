"""Plugin-owned resources (contract §11): added in `setup_app` before the app freezes, opened at
start-up and closed at shutdown (around the startup/shutdown hooks), shown in /readyz and
/metrics, listed by `turnstile plugins`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from prometheus_client import REGISTRY

import plugins.auth
import plugins.rate_limit
from app import BuildContext, Resources, hookimpl
from app.keys import pipelines_key
from app.main import create_app
from app.plugin_loading import PluginLoadError
from app.plugins import make_plugin_manager
from app.settings import Settings
from plugins.auth.config import AuthConfig
from plugins.auth.step import build as build_auth
from plugins.rate_limit.config import RateLimitConfig
from plugins.rate_limit.step import build as build_rate_limit
from plugins.rate_limit.step import counter_key
from tests.fixtures import sample_plugin

journal_key = web.AppKey("journal", list)


@attrs.define
class Journal:
    """A file opened at start-up and closed at shutdown, with what happened to it."""

    path: Path
    events: list[str]
    lines: int = 0
    file: Any = None

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self.file = self.path.open("a")
        self.events.append("opened")
        yield
        self.file.close()
        self.events.append("closed")

    async def check(self) -> tuple[str, bool]:
        return ("open" if self.file is not None and not self.file.closed else "closed"), True


class JournalPlugin:
    def __init__(self, path: Path) -> None:
        self.events: list[str] = []
        self.journal = Journal(path, self.events)

    @hookimpl
    def setup_app(self, app: web.Application, resources: Resources) -> None:
        resources.provide(journal_key, self.events, description="what happened")
        resources.add("journal", self.journal.lifecycle, check=self.journal.check, description="a file")
        resources.gauge("test_journal_lines", "Lines in the journal", lambda: self.journal.lines)

    @hookimpl
    def startup(self) -> None:
        self.events.append("startup hook")

    @hookimpl
    def shutdown(self) -> None:
        self.events.append("shutdown hook")


async def test_a_resource_opens_at_start_up_and_closes_at_shutdown(
    aiohttp_client: AiohttpClient, core_settings: Settings, tmp_path: Path
) -> None:
    plugin = JournalPlugin(tmp_path / "journal.log")
    app = create_app(core_settings, pm=make_plugin_manager(entrypoints=False, extra=[sample_plugin, plugin]))
    assert app[journal_key] is plugin.events  # there before any step is built, and before start-up
    assert plugin.events == []
    client = await aiohttp_client(app)
    assert plugin.events == ["opened", "startup hook"]
    await client.close()
    assert plugin.events == ["opened", "startup hook", "shutdown hook", "closed"]


async def test_a_resource_is_in_readyz_and_metrics_while_open(
    aiohttp_client: AiohttpClient, core_settings: Settings, tmp_path: Path
) -> None:
    plugin = JournalPlugin(tmp_path / "journal.log")
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, plugin])
    client = await aiohttp_client(create_app(core_settings, pm=pm))
    plugin.journal.lines = 3
    ready = await (await client.get("/readyz")).json()
    assert ready["checks"]["journal"] == "open"
    metrics = await (await client.get("/metrics")).text()
    assert "test_journal_lines 3.0" in metrics
    assert f'turnstile_plugin_resource_open{{plugin="{pm.get_name(plugin)}",resource="journal"}} 1.0' in metrics
    await client.close()
    assert REGISTRY.get_sample_value(
        "turnstile_plugin_resource_open", {"plugin": str(pm.get_name(plugin)), "resource": "journal"}
    ) == 0
    assert REGISTRY.get_sample_value("test_journal_lines") is None  # no longer exported


def test_two_plugins_cannot_provide_one_key(core_settings: Settings, tmp_path: Path) -> None:
    first, second = JournalPlugin(tmp_path / "a.log"), JournalPlugin(tmp_path / "b.log")
    with pytest.raises(ValueError, match="the app already holds"):
        create_app(core_settings, pm=make_plugin_manager(entrypoints=False, extra=[sample_plugin, first, second]))


def test_setup_app_must_not_be_async(core_settings: Settings) -> None:
    class Async:
        @hookimpl
        async def setup_app(self, app: web.Application) -> None:
            """Wrong: I/O belongs in a cleanup context."""

    # Refused as the plugins load, before anything is built (`turnstile check` too).
    with pytest.raises(PluginLoadError, match="setup_app must be a plain def"):
        make_plugin_manager(entrypoints=False, extra=[sample_plugin, Async()])


async def test_steps_built_on_a_running_app_share_its_objects(
    aiohttp_client: AiohttpClient, core_settings: Settings
) -> None:
    """No lazy `if not app.frozen` caches: a step built once the app runs (as a reload builds
    them) gets the objects the built-ins provided at start-up, never a private copy, even when
    no step of theirs existed before (its revocations or counts would not be shared)."""
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, plugins.auth, plugins.rate_limit])
    client = await aiohttp_client(create_app(core_settings, pm=pm))
    app = client.app
    assert app.frozen
    context = BuildContext(app, app[pipelines_key].pipelines[0])
    limit = RateLimitConfig(name="late", limit=1, window_s=30)
    assert build_rate_limit(limit, context).counter is build_rate_limit(limit, context).counter is app[counter_key]
    assert build_auth(AuthConfig(), context).services is build_auth(AuthConfig(), context).services
