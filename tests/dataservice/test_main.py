from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from app.dataservice.main import start_dataservice
from app.dataservice.routes import store_key
from app.dataservice.store import UserStore
from tests.dataservice.conftest import Client


async def test_wal_mode_is_on(client: Client, db_path: Path) -> None:
    assert await client.app[store_key].journal_mode() == "wal"
    with sqlite3.connect(db_path) as conn:  # WAL is a property of the file, not of one connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_database_and_its_wal_are_readable_by_their_owner_alone(client: Client, db_path: Path) -> None:
    # They hold every password hash.
    resp = await client.post("/api/v1/users/", json={
        "email": "ann@example.com", "password_hash": "$argon2id$x", "full_name": None, "roles": ["user"],
        "is_active": True,
    })
    assert resp.status == 201, await resp.text()
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        assert path.stat().st_mode & 0o777 == 0o600, path


async def test_parent_dir_and_schema_are_created(client: Client, db_path: Path) -> None:
    # read-only: fails rather than creating the file if the app did not
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "users" in tables


async def test_concurrent_creates_with_one_email_make_one_user(client: Client) -> None:
    body = {"email": "same@example.com", "password_hash": "h"}
    responses = await asyncio.gather(*(client.post("/api/v1/users", json=body) for _ in range(20)))
    assert sorted(r.status for r in responses) == [201] + [409] * 19


async def test_start_dataservice_binds_a_real_port(tmp_path: Path) -> None:
    runner, url = await start_dataservice(tmp_path / "data.sqlite3")
    try:
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok"}
            async with session.post(f"{url}/api/v1/users/", json={"email": "e@x.io", "password_hash": "h"}) as resp:
                assert resp.status == 201
    finally:
        await runner.cleanup()


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "data.sqlite3"
    for expected_total in (0, 1):
        runner, url = await start_dataservice(db)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/api/v1/users") as resp:
                    assert (await resp.json())["total"] == expected_total
                if expected_total == 0:
                    await session.post(f"{url}/api/v1/users", json={"email": "e@x.io", "password_hash": "h"})
        finally:
            await runner.cleanup()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGTERM")
async def test_run_dataservice_announces_the_real_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    code = "import sys; from app.dataservice.main import run_dataservice; run_dataservice('127.0.0.1', 0, sys.argv[1])"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(tmp_path / "db" / "data.sqlite3"),
        stdout=subprocess.PIPE, cwd=Path(__file__).parents[2], env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.split(" listening on ")[1].split()[0]
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_file_made_before_revocations_were_recorded_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE,"
            " password_hash TEXT NOT NULL, full_name TEXT, roles TEXT NOT NULL DEFAULT '[]',"
            " is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, updated_at TEXT NOT NULL) STRICT"
        )
        db.execute(
            "INSERT INTO users (email, password_hash, created_at, updated_at)"
            " VALUES ('old@example.com', 'h', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')"
        )
    store = await UserStore.open(path)
    try:
        record = await store.get(1)
        assert record is not None
        assert record.sessions_revoked_at is None
        changed = await store.update(1, {"sessions_revoked_at": "2026-11-30T12:00:00.000000Z"})
        assert changed is not None
        assert changed.sessions_revoked_at == "2026-11-30T12:00:00.000000Z"
    finally:
        await store.close()
