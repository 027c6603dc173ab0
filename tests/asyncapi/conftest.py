"""What the AsyncAPI tests share: the official AsyncAPI parser (node, installed by the test
command into tests/asyncapi/node), headless Chromium, and a pipelines file with a team
plugin's events beside the default ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

# The integration tests' fixtures that run the whole service over real HTTP, shared here.
from tests.integration.conftest import dataservice, redis_db, stack  # noqa: F401
from tests.services import ROOT

NODE_DIR = Path(__file__).resolve().parent / "node"
DEFAULT_PIPELINES = ROOT / "pipelines.toml"

# The default pipelines plus a team's: its own event with its own model, and a subscription
# whose wildcard bindings match some documented keys (`audit.#`) and none (`billing.*`).
AUDIT_PIPELINES = """
[[pipelines]]
name = "record_audit"
route = "POST /api/v1/audit"
body = "AuditRecord"
summary = "Put something on record"
steps = [
  { use = "auth", allow = ["authenticated"] },
  { use = "audit-log" },
  { use = "audit-emit", event = "audit.recorded" },
]

[[subscriptions]]
name = "audit_trail"
queue = "team.audit-trail"
bindings = ["audit.#", "user.deleted", "billing.*"]
steps = [{ use = "audit-log" }]
"""


def missing(what: str) -> None:
    """A tool the tests need is absent: in CI that fails, locally it skips with the reason."""
    msg = f"{what} (scripts/test.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@attrs.frozen
class ParserResult:
    returncode: int
    diagnostics: str


Parse = Callable[[dict[str, Any]], ParserResult]


@pytest.fixture
def asyncapi_parser(tmp_path: Path) -> Parse:
    """Runs the official AsyncAPI parser (@asyncapi/parser's validate) on a document."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (NODE_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        missing(f"@asyncapi/parser is not installed: run `npm ci` in {NODE_DIR.relative_to(ROOT)}")

    def parse(document: dict[str, Any]) -> ParserResult:
        path = tmp_path / f"asyncapi-{len(list(tmp_path.glob('asyncapi-*.json')))}.json"
        path.write_text(json.dumps(document))
        result = subprocess.run(
            [str(node), "validate.js", str(path)], cwd=NODE_DIR, capture_output=True, text=True,
            timeout=60, check=False,
        )
        return ParserResult(result.returncode, result.stdout + result.stderr)

    return parse


def audit_queue(unique: str) -> str:
    return f"test.{unique}.audit-trail"


@pytest.fixture
def audit_pipelines(tmp_path: Path, unique: str) -> Path:
    """The default pipelines and the team's, with this test's own queue names."""
    path = tmp_path / "audit-pipelines.toml"
    text = DEFAULT_PIPELINES.read_text() + AUDIT_PIPELINES
    text = text.replace("turnstile.user-changes", f"test.{unique}.user-changes")
    path.write_text(text.replace("team.audit-trail", audit_queue(unique)))
    return path
