"""`is_verified` in the reference data service's records (contract §7): false for a new user,
set by a PATCH, checked like every other field, and added to a database made before it existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiohttp.pytest_plugin import AiohttpClient

from app.dataservice.main import create_dataservice_app
from tests.dataservice.conftest import Client
from tests.dataservice.test_routes import create, problem

# The table as versions without `is_verified` made it.
OLD_SCHEMA = """
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    full_name     TEXT,
    roles         TEXT    NOT NULL DEFAULT '[]',
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
) STRICT
"""


async def test_a_new_user_is_unverified_until_a_patch_says_otherwise(client: Client) -> None:
    record = await create(client)
    assert record["is_verified"] is False
    resp = await client.patch(f"/api/v1/users/{record['id']}", json={"is_verified": True})
    assert resp.status == 200
    assert (await resp.json())["is_verified"] is True
    assert (await (await client.get(f"/api/v1/users/{record['id']}")).json())["is_verified"] is True
    page = await (await client.get("/api/v1/users", params={"email": record["email"]})).json()
    assert page["items"][0]["is_verified"] is True


async def test_is_verified_must_be_a_boolean(client: Client) -> None:
    record = await create(client)
    body = await problem(await client.patch(f"/api/v1/users/{record['id']}", json={"is_verified": 1}), 422)
    assert body["errors"] == [{"loc": ["body", "is_verified"], "msg": "must be true or false"}]


async def test_a_database_made_before_is_verified_gets_the_column(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO users (email, password_hash, created_at, updated_at) "
                   "VALUES ('old@example.com', 'h', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
    db.close()
    client = await aiohttp_client(create_dataservice_app(path))
    old = await (await client.get("/api/v1/users/1")).json()
    assert (old["email"], old["is_verified"]) == ("old@example.com", False)
    assert (await create(client, "new@example.com", is_verified=True))["is_verified"] is True
