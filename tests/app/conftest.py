from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

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
