"""No password and no password hash ever leaves the service (contract §4): not in a response
body or header, a log line, an error, an event or a cache entry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coredis
import pytest
from aiohttp import ClientResponse

from app.logs import JsonFormatter, setup_logging
from tests.integration.conftest import ADMIN_PASSWORD, Client, StackFactory, admin_headers, bearer

HASH_PREFIX = "$argon2"
FIRST = "first-Secret-pw-1"
SECOND = "second-Secret-pw-2"
WRONG = "wrong-Secret-pw-3"
CREATED = "created-Secret-pw-4"
SHORT = "Sh0rt!x"
SECRETS = (FIRST, SECOND, WRONG, CREATED, SHORT, ADMIN_PASSWORD)


def grant(username: str, password: str) -> dict[str, str]:
    """The OAuth2 password grant form."""
    return {"grant_type": "password", "username": username, "password": password}


class Recorder:
    """Sends requests through a client and keeps every answer's headers and body as text."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[str] = []

    async def __call__(self, method: str, path: str, expect: int, **kwargs: Any) -> ClientResponse:
        resp = await self.client.request(method, path, **kwargs)
        text = await resp.text()
        self.seen.append(f"{method} {path} -> {resp.status}\n{dict(resp.headers)!r}\n{text}")
        assert resp.status == expect, text
        return resp


def leaks(texts: list[str]) -> list[str]:
    """The texts holding a password of this test or an argon2 hash."""
    return [text for text in texts if HASH_PREFIX in text or any(secret in text for secret in SECRETS)]


async def user_journey(call: Recorder) -> int:
    """Register, log in (JSON and form), fail a login, change the password, and as an admin
    create a user and list and read users; a too-short password and a bad login body too.
    Returns the created user's id (its record is left in the cache)."""
    resp = await call("POST", "/api/v1/auth/register", 201, json={"email": "ann@example.com", "password": FIRST})
    ann = await resp.json()
    tokens = await (await call("POST", "/api/v1/auth/login", 200,
                               json={"email": "ann@example.com", "password": FIRST})).json()
    await call("POST", "/api/v1/auth/login", 401, json={"email": "ann@example.com", "password": WRONG})
    await call("POST", "/api/v1/auth/login", 401, data=grant("nobody@example.com", WRONG))
    await call("PATCH", f"/api/v1/users/{ann['id']}", 200, json={"password": SECOND, "current_password": FIRST},
               headers=bearer(tokens))
    await call("POST", "/api/v1/auth/login", 401, json={"email": "ann@example.com", "password": FIRST})
    await call("POST", "/api/v1/auth/login", 200, data=grant("ann@example.com", SECOND))
    admin = bearer(await (await call("POST", "/api/v1/auth/login", 200,
                                     json={"email": "admin@example.com", "password": ADMIN_PASSWORD})).json())
    created = await (await call("POST", "/api/v1/users", 201, headers=admin,
                                json={"email": "bob@example.com", "password": CREATED, "roles": ["ops"]})).json()
    await call("POST", "/api/v1/users", 409, headers=admin, json={"email": "bob@example.com", "password": CREATED})
    await call("GET", "/api/v1/users", 200, headers=admin)
    await call("PATCH", f"/api/v1/users/{created['id']}", 200, headers=admin, json={"password": SECOND})
    await call("GET", f"/api/v1/users/{created['id']}", 200, headers=admin)
    await call("GET", f"/api/v1/users/{created['id']}", 200, headers=admin)  # from the cache
    await call("POST", "/api/v1/auth/register", 422, json={"email": "cy@example.com", "password": SHORT})
    await call("PATCH", f"/api/v1/users/{created['id']}", 422, headers=admin, json={"password": SHORT})
    await call("POST", "/api/v1/auth/login", 422, json={"email": ["ann@example.com"], "password": SHORT})
    await call("POST", "/api/v1/auth/register", 400, data=f'{{"password": "{SHORT}"',
               headers={"Content-Type": "application/json"})
    await call("GET", "/api/v1/auth/me", 200, headers=bearer(tokens) | admin)
    return int(created["id"])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Logging as `LOG_LEVEL=DEBUG LOG_FORMAT=json` sets it up, every record captured too.

    The logging state (root handlers, every logger's level) is restored afterwards.
    """
    root = logging.getLogger()
    handlers, levels = root.handlers[:], {name: logging.getLogger(name).level for name in _logger_names()}
    root_level = root.level
    setup_logging("DEBUG", "json")
    caplog.set_level(logging.DEBUG)
    yield caplog
    root.handlers[:] = handlers
    root.setLevel(root_level)
    for name in _logger_names():
        logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))


def _logger_names() -> list[str]:
    return [name for name, logger in logging.Logger.manager.loggerDict.items() if isinstance(logger, logging.Logger)]


def leaking_loggers(records: list[logging.LogRecord]) -> list[str]:
    """The names of the loggers of the records that leak, each record as the production JSON
    formatter writes it (extras included) with its args."""
    formatter = JsonFormatter()
    return [record.name for record in records if leaks([f"{formatter.format(record)}\n{record.args!r}"])]


# The reference data service's SQLite driver: its DEBUG lines carry the SQL parameters.
DRIVER_LOGGER = "aiosqlite"


async def test_no_secret_in_responses_logs_or_events(
    stack: StackFactory, debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    call = Recorder(await stack())
    await user_journey(call)
    assert len(call.seen) == 19
    assert leaks(call.seen) == []
    records = [record for record in debug_logs.records if record.name != DRIVER_LOGGER]
    assert any(record.name.startswith("turnstile") for record in records)
    assert leaking_loggers(records) == []
    events = (tmp_path / "var" / "events.jsonl").read_text()
    assert events.count("user.created") == 3  # the start-up admin's, and the journey's two
    assert leaks([events]) == []


async def test_no_secret_in_redis(stack: StackFactory, debug_logs: pytest.LogCaptureFixture, redis_db: str) -> None:
    call = Recorder(await stack(redis_url=redis_db))
    cached_id = await user_journey(call)
    assert leaks(call.seen) == []
    assert leaking_loggers([record for record in debug_logs.records if record.name != DRIVER_LOGGER]) == []
    stored: list[str] = []
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_db, decode_responses=True)
    async with client:
        async for key in client.scan_iter():
            kind = await client.type(key)
            stored.append(f"{key}={await client.get(key)}" if kind == "string" else f"{key} ({kind})")
    assert any(key.split("=")[0].endswith(f"user:{cached_id}") for key in stored), stored
    assert leaks(stored) == []


async def test_no_hash_in_the_embedded_data_services_debug_log(
    stack: StackFactory, debug_logs: pytest.LogCaptureFixture
) -> None:
    await user_journey(Recorder(await stack()))
    assert leaking_loggers(debug_logs.records) == []


@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/users"])
async def test_a_too_short_password_is_not_echoed(stack: StackFactory, path: str) -> None:
    client = await stack()
    headers = {} if path.endswith("register") else await admin_headers(client)
    resp = await client.post(path, json={"email": "ann@example.com", "password": SHORT}, headers=headers)
    assert resp.status == 422
    text = await resp.text()
    assert SHORT not in text
    assert (await resp.json())["errors"] == [{"loc": ["body", "password"], "msg": "must be at least 8 characters"}]
