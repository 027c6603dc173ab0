"""Hook specs a plugin offers other plugins (contract §11, like pytest's `pytest_addhooks`): the
sample plugin declares `echo_extras`, another plugin implements it, and the sample plugin's step
calls it. Implementations are checked against the spec whatever the order plugins load in."""

from __future__ import annotations

import asyncio
from typing import Any

import pluggy
import pytest
from aiohttp import web

from app import hookimpl
from app.plugin_loading import PluginLoadError
from app.plugins import hookspec_names, make_plugin_manager, offered_hookspecs
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.fixtures import sample_plugin


class Stamper:
    """A second team's plugin, building on the sample plugin's hook."""

    @hookimpl
    async def echo_extras(self, request: web.Request) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"stamped_by": "stamper", "path": request.path}


class Tagger:
    @hookimpl
    def echo_extras(self) -> dict[str, Any]:
        return {"tag": "t-1"}


async def test_another_plugin_implements_a_plugins_hook(turnstile: StartService) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[Stamper(), sample_plugin, Tagger()], entrypoints=False)
    answer = await (await service.client.get("/things/a")).json()
    assert (answer["stamped_by"], answer["path"], answer["tag"]) == ("stamper", "/things/a", "t-1")


async def test_without_implementations_the_hook_costs_nothing(turnstile: StartService) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False)
    assert set(await (await service.client.get("/things/a")).json()) == {"params", "body", "trail", "actor"}


def test_an_implementation_that_does_not_fit_the_spec_is_refused() -> None:
    class Wrong:
        @hookimpl
        def echo_extras(self, request: web.Request, nonsense: int) -> None:
            """Asks for an argument the spec does not offer."""

    # Registered before the plugin that declares the spec: still checked.
    with pytest.raises(PluginLoadError, match="nonsense") as info:
        make_plugin_manager(entrypoints=False, extra=[Wrong(), sample_plugin])
    assert str(info.value).startswith("plugin ")
    assert isinstance(info.value.__cause__, pluggy.PluginValidationError)


def test_an_implementation_of_a_hook_nobody_offers_is_refused() -> None:
    with pytest.raises(PluginLoadError, match="echo_extras"):
        make_plugin_manager(entrypoints=False, extra=[Tagger()])


def test_a_load_time_hook_written_async_is_refused_naming_the_plugin() -> None:
    class Async:
        @hookimpl
        async def register_steps(self) -> list[Any]:
            """Wrong: nothing awaits it; iterating its coroutine failed with a bare TypeError."""
            return []

    with pytest.raises(PluginLoadError, match="register_steps must be a plain def, not async def"):
        make_plugin_manager(entrypoints=False, extra=[Async()])


def test_offered_hook_specs_are_known_by_plugin() -> None:
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin])
    offered = [(plugin, hookspec_names(holder)) for plugin, holder in offered_hookspecs(pm)]
    assert offered == [(pm.get_name(sample_plugin), ["echo_extras"])]
