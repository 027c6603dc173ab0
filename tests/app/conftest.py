from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient

from app.main import create_app
from app.plugins import make_plugin_manager
from app.settings import Settings, load_settings
from tests.fixtures import sample_plugin

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CORE_PIPELINES = FIXTURES / "pipelines_core.toml"


@pytest.fixture
def core_settings(tmp_path: Path) -> Settings:
    return attrs.evolve(load_settings({}), pipelines_file=CORE_PIPELINES, var_dir=tmp_path / "var")


def make_core_app(settings: Settings) -> web.Application:
    return create_app(settings, pm=make_plugin_manager(entrypoints=False, extra=[sample_plugin]))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, core_settings: Settings) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(make_core_app(core_settings))
