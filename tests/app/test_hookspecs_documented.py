"""Every hook spec says when it runs, what it may return, and whether it may be async: the
core's, and those each installed plugin (and the sample team plugin) offers other plugins."""

from __future__ import annotations

import inspect

import pytest

from app import hookspecs
from app.plugins import hookspec_names, make_plugin_manager, offered_hookspecs
from tests.fixtures import sample_plugin

CORE_SPECS = [
    (name, fn)
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "turnstile_spec")
]
OFFERED_SPECS = [
    (f"{plugin}:{name}", getattr(holder, name))
    for plugin, holder in offered_hookspecs(make_plugin_manager(extra=[sample_plugin]))
    for name in hookspec_names(holder)
]
SPECS = CORE_SPECS + OFFERED_SPECS


def test_plugins_offered_hook_specs_are_covered() -> None:
    assert "tests.fixtures.sample_plugin:echo_extras" in {name for name, _ in OFFERED_SPECS}


def test_there_are_hook_specs() -> None:
    assert {name for name, _ in CORE_SPECS} >= {
        "register_steps", "register_models", "startup", "shutdown", "transform_request",
        "check_request", "transform_upstream", "transform_response", "enrich_event",
    }


@pytest.mark.parametrize(("name", "fn"), SPECS, ids=[name for name, _ in SPECS])
def test_hook_spec_is_documented(name: str, fn: object) -> None:
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 80, f"{name}: no real docstring"
    lowered = doc.lower()
    assert "run" in lowered, f"{name}: does not say when it runs"
    assert "return" in lowered, f"{name}: does not say what it may return"
    assert "async" in lowered or "synchronous" in lowered, f"{name}: does not say whether it may be async"
