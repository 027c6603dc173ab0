"""The data service needs a credential (contract §3, §7), and the credential never leaks.

Attack written as a test: the embedded data service's port is in the log, so any local
process could read every password hash or make itself admin through it. Now it answers 401
to anyone but the in-process client, whose token is random per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from app.dataservice import start_dataservice
from app.keys import data_service_key
from app.logs import JsonFormatter
from tests.integration.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    StackFactory,
    assert_problem,
    bearer,
    login,
    register,
)
from tests.integration.test_secrets import Recorder, user_journey

TOKEN = "integration-data-service-token-7"  # a test credential
EMBEDDED_LINE = "embedded data service listening on "

# No start-up admin: its creation would fail first, against these data services.
NO_ADMIN = {"TURNSTILE_ADMIN_EMAIL": "", "TURNSTILE_ADMIN_PASSWORD": ""}


def formatted(records: list[logging.LogRecord]) -> str:
    """Every record as the production JSON formatter writes it (extras included), with its args."""
    formatter = JsonFormatter()
    return "\n".join(f"{formatter.format(record)} {record.args!r}" for record in records)


@pytest.fixture
async def guarded_dataservice(tmp_path: Path) -> AsyncIterator[str]:
    """The reference data service on a fresh SQLite file, given TOKEN; its base URL."""
    runner, url = await start_dataservice(tmp_path / "guarded.sqlite3", token=TOKEN)
    yield url
    await runner.cleanup()


async def test_the_embedded_data_service_refuses_other_callers(
    stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnstile.wiring")
    client = await stack(data_service_url=None)
    # What any local process can read in the log.
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(EMBEDDED_LINE)]
    url = line.removeprefix(EMBEDDED_LINE).split()[0]
    async with aiohttp.ClientSession() as outsider:
        for headers in ({}, {"Authorization": "Bearer guessed-token-0123456789"}):
            async with outsider.get(f"{url}/api/v1/users", headers=headers) as resp:
                assert resp.status == 401
                assert "password_hash" not in await resp.text()
            body = {"email": "mallory@example.com", "password_hash": "x", "roles": ["admin"]}
            async with outsider.post(f"{url}/api/v1/users/", json=body, headers=headers) as resp:
                assert resp.status == 401
    # The service itself still works end to end through it.
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", "correct-horse-1")
    me = await client.get("/api/v1/auth/me", headers=bearer(tokens))
    assert (await me.json())["id"] == user["id"]
    admin = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    listed = await client.get("/api/v1/users", headers=bearer(admin))
    assert "mallory@example.com" not in await listed.text()


async def test_two_processes_never_share_the_embedded_token(stack: StackFactory, tmp_path: Path) -> None:
    first, second = await stack(data_service_url=None), await stack(data_service_url=None, var_dir=tmp_path / "v2")
    tokens = {client.app[data_service_key].options.token for client in (first, second)}
    assert len(tokens) == 2
    assert None not in tokens


async def test_the_service_works_end_to_end_with_a_token(
    stack: StackFactory, guarded_dataservice: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    call = Recorder(await stack(data_service_url=guarded_dataservice, data_service_token=TOKEN))
    await user_journey(call)
    records = [r for r in caplog.records if r.name != "aiosqlite"]
    assert any(r.name == "turnstile.dataservice" for r in records)  # the data service's own lines were captured
    assert TOKEN not in formatted(records)
    assert all(TOKEN not in seen for seen in call.seen)


async def test_a_missing_token_is_a_502_for_the_client_and_an_error_for_the_operator(
    stack: StackFactory, guarded_dataservice: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await stack(data_service_url=guarded_dataservice, env=NO_ADMIN)
    resp = await client.post("/api/v1/auth/register", json={"email": "ann@example.com", "password": "correct-horse-1"})
    await assert_problem(resp, 502)
    [error] = [r for r in caplog.records if r.name == "turnstile.dataservice" and r.levelno == logging.ERROR]
    assert "with 401" in error.getMessage()


async def _broken_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request with a header aiohttp refuses to parse."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: nope\r\n\r\n{}")
    await writer.drain()
    writer.close()


async def test_the_token_is_not_logged_when_the_data_service_answers_garbage(
    stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp's error for an unparsable answer carries the request's headers in its repr.
    server = await asyncio.start_server(_broken_upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        caplog.set_level(logging.DEBUG)
        client = await stack(
            data_service_url=f"http://127.0.0.1:{port}", data_service_token=TOKEN,
            env=NO_ADMIN,
        )
        resp = await client.post("/api/v1/auth/register", json={"email": "ann@example.com", "password": "pw-123456789"})
        await assert_problem(resp, 502)
    finally:
        server.close()
        await server.wait_closed()
    lines = formatted(caplog.records)
    assert "sent a broken answer" in lines
    assert TOKEN not in lines
