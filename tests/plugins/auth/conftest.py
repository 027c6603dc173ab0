from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from app.dataservice.main import start_dataservice
from app.settings import Settings, load_settings
from plugins.auth.passwords import Argon2Hasher
from plugins.auth.settings import TokenSettings

SECRET = "s" * 48
# The auth plugin's variables as a test sets them: a fixed secret, argon2's cheapest costs
# (the tests check what is hashed, not how hard).
CHEAP_ENV = {"JWT_SECRET": SECRET, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1"}


def cheap_settings(tmp_path: Path, env: Mapping[str, str] | None = None, **changes: Any) -> Settings:
    """Settings from CHEAP_ENV (and `env`), with core fields changed as `changes` say."""
    base = attrs.evolve(load_settings({**CHEAP_ENV, **(env or {})}), env="test", var_dir=tmp_path / "var")
    return attrs.evolve(base, **changes)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return cheap_settings(tmp_path)


@pytest.fixture
def token_settings() -> TokenSettings:
    return TokenSettings(secret=SECRET)


@pytest.fixture
def hasher() -> Argon2Hasher:
    return Argon2Hasher(time_cost=1, memory_kib=8, parallelism=1)


@pytest.fixture
async def dataservice_url(tmp_path: Path) -> AsyncIterator[str]:
    runner, url = await start_dataservice(tmp_path / "db.sqlite3")
    try:
        yield url
    finally:
        await runner.cleanup()


async def create_user(
    url: str, hasher: Argon2Hasher, email: str, password: str, *, roles: list[str] | None = None,
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
