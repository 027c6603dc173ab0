"""docs/plugins.md's code runs: each block marked as a file of examples/acme-plugin is that file
(or a part of it) as it is, so the acme tests run it; every other Python block is executed.
And the example plugin stays as small as the guide says."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from tests.services import ROOT

GUIDE = ROOT / "docs" / "plugins.md"
ACME = ROOT / "examples" / "acme-plugin" / "acme_plugin"
# A fenced block, with the marker comment on the line before it when there is one.
BLOCK = re.compile(r"(?:<!-- (file|excerpt): (\S+) -->\n)?```(\w+)\n(.*?)```", re.DOTALL)
BLOCKS = [match.groups() for match in BLOCK.finditer(GUIDE.read_text())]


def _id(block: tuple[str | None, str | None, str, str]) -> str:
    kind, path, lang, text = block
    return f"{kind}:{path}" if kind else f"{lang}:{text.splitlines()[0][:40] if text else ''}"


MARKED = [block for block in BLOCKS if block[0]]
PYTHON = [block for block in BLOCKS if not block[0] and block[2] == "python"]


def test_the_guide_shows_every_file_of_the_example_plugin() -> None:
    shown = {path for kind, path, _lang, _text in MARKED if kind == "file"}
    files = {str(path.relative_to(ROOT)) for path in ACME.glob("*.py")}
    assert files <= shown


@pytest.mark.parametrize("block", MARKED, ids=_id)
def test_a_marked_block_is_the_file_as_it_is(block: tuple[str, str, str, str]) -> None:
    kind, path, _lang, text = block
    source = (ROOT / path).read_text()
    if kind == "file":
        assert text == source, f"docs/plugins.md shows an outdated {path}"
    else:
        assert text in source, f"docs/plugins.md quotes {path} as it no longer is"


@pytest.mark.parametrize("block", PYTHON, ids=_id)
def test_every_other_python_block_runs(block: tuple[None, None, str, str]) -> None:
    exec(compile(block[3], str(GUIDE), "exec"), {"__name__": "plugins_md_example"})


def test_toml_blocks_parse() -> None:
    for _kind, _path, lang, text in BLOCKS:
        if lang == "toml":
            tomllib.loads(text)


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not a comment, not a docstring, not an import."""
    source = path.read_text()
    skipped: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            skipped.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                skipped.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(
        1 for number, line in enumerate(source.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and number not in skipped
    )


def test_the_example_plugin_is_small() -> None:
    """At most 30 lines per feature (a module each), at most 80 in all: a team's plugin is small."""
    sizes = {path.name: code_lines(path) for path in ACME.glob("*.py")}
    assert all(size <= 30 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 80, sizes
