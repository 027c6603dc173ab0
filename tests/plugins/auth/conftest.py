from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from app.dataservice.main import start_dataservice
from app.passwords import PasswordHasher, hasher_for
from app.settings import Settings, load_settings

SECRET = "s" * 48


def cheap_settings(tmp_path: Path, **changes: Any) -> Settings:
    base = attrs.evolve(
        load_settings({}), env="test", var_dir=tmp_path / "var", jwt_secret=SECRET, jwt_secret_is_dev=False,
        argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1,
    )
    return attrs.evolve(base, **changes)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return cheap_settings(tmp_path)


@pytest.fixture
def hasher(settings: Settings) -> PasswordHasher:
    return hasher_for(settings)


@pytest.fixture
async def dataservice_url(tmp_path: Path) -> AsyncIterator[str]:
    runner, url = await start_dataservice(tmp_path / "db.sqlite3")
    try:
        yield url
    finally:
        await runner.cleanup()


async def create_user(
    url: str, hasher: PasswordHasher, email: str, password: str, *, roles: list[str] | None = None,
    is_active: bool = True, password_hash: str | None = None,
) -> int:
    body = {
        "email": email, "password_hash": password_hash or await hasher.hash(password),
        "roles": roles or ["user"], "is_active": is_active,
    }
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/v1/users", json=body) as resp:
        assert resp.status == 201, await resp.text()
        user_id = (await resp.json())["id"]
    assert isinstance(user_id, int)
    return user_id
