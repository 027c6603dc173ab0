from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from app.dataservice.main import create_dataservice_app

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "data.sqlite3"


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, db_path: Path) -> Client:
    return await aiohttp_client(create_dataservice_app(db_path))

