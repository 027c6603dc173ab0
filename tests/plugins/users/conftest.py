from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.clients.dataservice import DataServiceClient, DataServiceOptions
from app.dataservice import start_dataservice
from app.settings import Settings
from plugins.auth.passwords import Argon2Hasher


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var")


@pytest.fixture
def hasher() -> Argon2Hasher:
    # argon2's cheapest parameters: the tests check what is hashed, not how hard.
    return Argon2Hasher(time_cost=1, memory_kib=8, parallelism=1)


@pytest.fixture
async def data_service(tmp_path: Path) -> AsyncIterator[DataServiceClient]:
    runner, base_url = await start_dataservice(tmp_path / "db.sqlite3")
    try:
        async with DataServiceClient(DataServiceOptions(base_url=base_url)) as client:
            yield client
    finally:
        await runner.cleanup()
