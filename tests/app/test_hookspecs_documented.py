"""Every hook spec says when it runs, what it may return, and whether it may be async."""

from __future__ import annotations

import inspect

import pytest

from app import hookspecs

SPECS = [
    (name, fn)
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "turnstile_spec")
]


def test_there_are_hook_specs() -> None:
    assert {name for name, _ in SPECS} >= {
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
