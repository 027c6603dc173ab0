"""The reference data service's credential (contract §7): given a token, every API call needs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from app.dataservice.main import create_dataservice_app, start_dataservice
from tests.content_coding import gzip_bomb
from tests.dataservice.conftest import Client
from tests.services import ROOT

TOKEN = "reference-data-service-token-1"  # a test credential
PREVIOUS = "the-token-before-it-0123"  # one a rotation retires
PROBLEM = "application/problem+json"
USER = {"email": "ada@example.com", "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def guarded(aiohttp_client: AiohttpClient, db_path: Path) -> Client:
    return await aiohttp_client(create_dataservice_app(db_path, token=TOKEN))


async def assert_refused(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 401, await resp.text()
    assert resp.content_type == PROBLEM
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json(content_type=PROBLEM)
    assert body["status"] == 401
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert TOKEN not in await resp.text()


async def test_a_gzip_bomb_without_the_token_is_refused_without_being_inflated(
    guarded: Client, inflated_by_aiohttp: list[int],
) -> None:
    # The 401 comes before the body is read; aiohttp then drains the rest, which it used to
    # inflate: 1 MB of gzip holding 1 GB held the event loop for seconds.
    resp = await guarded.post("/api/v1/users/", data=gzip_bomb(64),
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    await assert_refused(resp)
    assert inflated_by_aiohttp == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("reference-data-service-token-2"),
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer \u00e9t\u00e9-token-with-latin-1"},
    ],
    ids=["none", "other", "prefix", "longer", "no-scheme", "basic", "empty", "non-ascii"],
)
async def test_calls_without_the_token_are_401(guarded: Client, headers: dict[str, str]) -> None:
    await assert_refused(await guarded.post("/api/v1/users/", json=USER, headers=headers))
    await assert_refused(await guarded.get("/api/v1/users", headers=headers))
    await assert_refused(await guarded.get("/api/v1/users/1", headers=headers))
    await assert_refused(await guarded.patch("/api/v1/users/1", json={"full_name": "x"}, headers=headers))
    await assert_refused(await guarded.delete("/api/v1/users/1", headers=headers))
    # Nothing was written by any of them.
    listed = await guarded.get("/api/v1/users", headers=bearer(TOKEN))
    assert (await listed.json())["total"] == 0


async def test_unknown_paths_are_refused_before_they_are_routed(guarded: Client) -> None:
    await assert_refused(await guarded.get("/api/v1/anything"))


async def test_calls_with_the_token_work(guarded: Client) -> None:
    created = await guarded.post("/api/v1/users/", json=USER, headers=bearer(TOKEN))
    assert created.status == 201
    user = await created.json()
    # The scheme is case-insensitive (RFC 7235 §2.1).
    got = await guarded.get(f"/api/v1/users/{user['id']}", headers={"Authorization": f"bearer {TOKEN}"})
    assert got.status == 200
    assert (await got.json())["email"] == USER["email"]


async def test_healthz_stays_open_for_probes(guarded: Client) -> None:
    resp = await guarded.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_without_a_token_the_service_is_open(client: Client) -> None:
    resp = await client.post("/api/v1/users/", json=USER)
    assert resp.status == 201


async def test_start_dataservice_takes_a_token(tmp_path: Path) -> None:
    runner, url = await start_dataservice(tmp_path / "data.sqlite3", token=TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/api/v1/users") as resp:
                await assert_refused(resp)
            async with session.get(f"{url}/api/v1/users", headers=bearer(TOKEN)) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_during_a_rotation_the_previous_tokens_are_accepted_too(tmp_path: Path) -> None:
    new, older = "the-new-token-0123456789", "an-older-one-0123456789"
    runner, url = await start_dataservice(tmp_path / "data.sqlite3", token=new, previous_tokens=[TOKEN, older])
    try:
        async with aiohttp.ClientSession() as session:
            for accepted in (new, TOKEN, older):
                async with session.get(f"{url}/api/v1/users", headers=bearer(accepted)) as resp:
                    assert resp.status == 200
            async with session.get(f"{url}/api/v1/users", headers=bearer("not-one-of-them-0123456")) as resp:
                assert resp.status == 401
    finally:
        await runner.cleanup()


@pytest.fixture
async def process(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """`turnstile dataservice` run as an operator runs it; (its URL, everything it printed)."""
    args, env = request.param
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    previous_file = tmp_path / "previous"
    previous_file.write_text(f"{PREVIOUS}\n\n")
    argv = [arg.replace("PREVIOUS_FILE", str(previous_file)).replace("TOKEN_FILE", str(token_file)) for arg in args]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "dataservice", "--port", "0", "--db", str(tmp_path / "d.sqlite3"), *argv,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("DATA_SERVICE")},
             **{k: v.replace("TOKEN_FILE", str(token_file)) for k, v in env.items()}},
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.split(" listening on ")[1].split()[0]
        yield url, line
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stdout.read(), 20)).decode()
        await proc.wait()
        assert TOKEN not in line + rest


@pytest.mark.parametrize(
    "process",
    [
        (["--token-file", "TOKEN_FILE"], {}),
        ([], {"DATA_SERVICE_TOKEN": TOKEN}),
        ([], {"DATA_SERVICE_TOKEN_FILE": "TOKEN_FILE"}),
    ],
    ids=["--token-file", "DATA_SERVICE_TOKEN", "DATA_SERVICE_TOKEN_FILE"],
    indirect=True,
)
async def test_the_command_takes_the_token_and_listens_on_loopback(process: tuple[str, str]) -> None:
    url, line = process
    assert url.startswith("http://127.0.0.1:")
    assert "bearer token required" in line
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/users") as resp:
            await assert_refused(resp)
        async with session.get(f"{url}/api/v1/users", headers=bearer(TOKEN)) as resp:
            assert resp.status == 200
            assert resp.headers["Server"] == "turnstile"  # no software versions (contract §4)
        async with session.get(f"{url}/api/v1/users", headers=bearer(PREVIOUS)) as resp:
            assert resp.status == 401  # no rotation under way


@pytest.mark.parametrize(
    "process", [(["--token-file", "TOKEN_FILE", "--previous-token-file", "PREVIOUS_FILE"], {})], indirect=True
)
async def test_the_command_accepts_the_previous_tokens_during_a_rotation(process: tuple[str, str]) -> None:
    url, _line = process
    async with aiohttp.ClientSession() as session:
        for token in (TOKEN, PREVIOUS):
            async with session.get(f"{url}/api/v1/users", headers=bearer(token)) as resp:
                assert resp.status == 200


def test_the_command_refuses_an_unusable_token_file(tmp_path: Path) -> None:
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    result = subprocess.run(
        [sys.executable, "-m", "app", "dataservice", "--port", "0", "--token-file", str(weak)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"turnstile: --token-file {weak}: must be at least 16 characters\n"
