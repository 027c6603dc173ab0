from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.logs import setup_logging
from app.settings import Settings, load_settings
from app.testing import StartService
from tests.fixtures import sample_plugin

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CORE_PIPELINES = FIXTURES / "pipelines_core.toml"


@pytest.fixture
def core_settings(tmp_path: Path) -> Settings:
    return attrs.evolve(load_settings({}), pipelines_file=CORE_PIPELINES, var_dir=tmp_path / "var")


@pytest.fixture
async def client(turnstile: StartService) -> TestClient[web.Request, web.Application]:
    """The core on the sample plugin alone, started by the test kit."""
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False)
    return service.client


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """`LOG_FORMAT=json` as `turnstile serve` sets it up, writing to a string; the root
    logger's handlers and level are restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    setup_logging("INFO", "json")
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    """What `json_logs` caught, one dict per line."""
    return [json.loads(line) for line in out.getvalue().splitlines()]
