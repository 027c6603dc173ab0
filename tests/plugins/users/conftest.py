from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.clients.dataservice import DataServiceClient, DataServiceOptions
from app.dataservice import start_dataservice
from app.passwords import PasswordHasher, hasher_for
from app.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # argon2's cheapest parameters: the tests check what is hashed, not how hard.
    return Settings(var_dir=tmp_path / "var", argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


@pytest.fixture
def hasher(settings: Settings) -> PasswordHasher:
    return hasher_for(settings)


@pytest.fixture
async def data_service(tmp_path: Path) -> AsyncIterator[DataServiceClient]:
    runner, base_url = await start_dataservice(tmp_path / "db.sqlite3")
    try:
        async with DataServiceClient(DataServiceOptions(base_url=base_url)) as client:
            yield client
    finally:
        await runner.cleanup()
