"""The public plugin API (contract §11): the built-ins import from `app` and nothing under it,
the core never imports a plugin, and every exported class and function says what it is."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

import app
from tests.services import ROOT

ACME_ROOT = ROOT / "examples" / "acme-plugin"
PLUGIN_ROOTS = (ROOT / "plugins", ACME_ROOT / "acme_plugin")
CORE_ROOT = ROOT / "app"


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in `path`, relative imports resolved as written."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            yield node.lineno, node.module


def _python_files(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*.py"))


def test_built_in_plugins_import_only_the_public_api() -> None:
    private = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _python_files(*PLUGIN_ROOTS)
        for line, module in _imports(path)
        if module.startswith("app.")
    ]
    assert private == []


def test_a_teams_plugin_tests_import_only_the_public_api_and_the_test_kit() -> None:
    private = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _python_files(ACME_ROOT / "tests")
        for line, module in _imports(path)
        if module.startswith("app.") and module != "app.testing"
    ]
    assert private == []


def test_the_core_never_imports_a_plugin() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _python_files(CORE_ROOT)
        for line, module in _imports(path)
        if module == "plugins" or module.startswith("plugins.")
    ]
    assert found == []


# Constants and keys carry no docstring of their own: docs/plugins.md describes them.
CALLABLES = sorted(name for name in app.__all__ if inspect.isclass(getattr(app, name))
                   or inspect.isfunction(getattr(app, name)))


@pytest.mark.parametrize("name", CALLABLES)
def test_every_exported_class_and_function_has_its_own_docstring(name: str) -> None:
    value = getattr(app, name)
    # A class's own docstring, not one inherited from its base.
    doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
    assert (doc or "").strip(), f"app.{name} has no docstring"


def test_every_export_is_described_in_the_plugin_guide() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    missing = [name for name in app.__all__ if f"`{name}`" not in guide]
    assert missing == []
