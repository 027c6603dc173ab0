"""The whole service as users meet it: the default pipelines.toml, the built-in plugins, the
reference data service over HTTP, and the real Redis and RabbitMQ.

Isolation: each test gets a fresh SQLite data service, an emptied Redis database of its
own (INTEGRATION_REDIS_DB), and its own exchange and subscription queue names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiormq
import attrs
import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient

from app.dataservice import start_dataservice
from app.main import create_app
from app.plugins import make_plugin_manager
from app.settings import Settings, load_settings
from tests.integration.faults import FaultProxy
from tests.services import RABBITMQ_URL, ROOT, flush_redis, is_cluster

DEFAULT_PIPELINES = ROOT / "pipelines.toml"
INTEGRATION_REDIS_DB = 15
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1"  # a test account's
JWT_SECRET = "integration-tests-secret-of-at-least-32-bytes"

Client = TestClient[web.Request, web.Application]


def redis_db_url(redis_url: str, db: int = INTEGRATION_REDIS_DB) -> str:
    """`redis_url` on database `db`; a cluster has database 0 only, and its URL is kept."""
    if is_cluster(redis_url):
        return redis_url
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture
async def redis_db(redis_url: str) -> str:
    """A Redis URL on a database emptied for this test."""
    url = redis_db_url(redis_url)
    await flush_redis(url)
    return url


@pytest.fixture(params=["embedded", "redis"])
def token_state(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Stack overrides: the in-process token store and counters, or the real Redis."""
    if request.param == "redis":
        return {"redis_url": request.getfixturevalue("redis_db")}
    return {}


@pytest.fixture
async def dataservice(tmp_path: Path) -> AsyncIterator[str]:
    """The reference data service on a fresh SQLite file; its base URL."""
    runner, url = await start_dataservice(tmp_path / "data.sqlite3")
    yield url
    await runner.cleanup()


REFRESH_GRACE_S = 0.5  # the refresh grace window of the tests' pipelines (5 s by default)


def pipelines_for(tmp_path: Path, unique: str) -> Path:
    """The default pipelines file with this test's own subscription queue names and a short
    refresh grace window (so a replay after it is quick to test)."""
    path = tmp_path / "pipelines.toml"
    text = DEFAULT_PIPELINES.read_text().replace("turnstile.user-changes", f"test.{unique}.user-changes")
    default = '{ use = "refresh", grace_s = 5 }'
    assert default in text
    path.write_text(text.replace(default, f'{{ use = "refresh", grace_s = {REFRESH_GRACE_S} }}'))
    return path


def make_settings(tmp_path: Path, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings as an operator would set them, with cheap argon2 costs and a fixed secret;
    `env` changes variables (plugins' included: an empty value unsets one), `overrides` the
    core's fields."""
    # The mail and accounts variables a test set in the process (the SMTP inbox fixture does).
    mail = {k: v for k, v in os.environ.items() if k.startswith(("SMTP_", "MAIL_", "PUBLIC_URL", "ACCOUNTS_"))}
    base = load_settings({
        **mail,
        "JWT_SECRET": JWT_SECRET,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8",
        "ARGON2_PARALLELISM": "1",
        "TURNSTILE_ADMIN_EMAIL": ADMIN_EMAIL,
        "TURNSTILE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **(env or {}),
    })
    values: dict[str, Any] = {"pipelines_file": DEFAULT_PIPELINES, "var_dir": tmp_path / "var"}
    values.update(overrides)
    return attrs.evolve(base, **values)


StackFactory = Callable[..., Awaitable[Client]]

PROBLEM_FIELDS = {"type", "title", "status", "detail", "request_id"}


async def assert_problem(resp: ClientResponse, status: int) -> dict[str, Any]:
    """`resp` is an RFC 9457 problem of `status`, with the headers contract §5 asks for."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = orjson.loads(text)
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert "127.0.0.1" not in text  # no upstream address reaches a client
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    if status in (429, 503):
        assert int(resp.headers["Retry-After"]) >= 1
    return body


# The tests whose service ran on the real broker: the durable queues their subscriptions
# declared (named after the test) are deleted when the session ends, so repeated local runs do
# not pile them up (the test command also starts its broker empty). Removing twice is fine.
_ON_THE_BROKER: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def _remove_broker_topology_at_the_end() -> Iterator[None]:
    yield
    if not _ON_THE_BROKER:
        return
    from tests.integration.amqp_capture import remove_test_topology  # it imports this module

    async def remove_all() -> None:
        for unique in sorted(_ON_THE_BROKER):
            await remove_test_topology(RABBITMQ_URL, unique)

    with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):  # a broker left stopped: nothing to do
        asyncio.run(remove_all())


@pytest.fixture
async def proxy(dataservice: str) -> AsyncIterator[FaultProxy]:
    """A fault-injecting proxy in front of the test's data service (tests/integration/faults.py),
    passing everything on until a test sets its `mode`."""
    faulty = FaultProxy(dataservice)
    await faulty.start()
    yield faulty
    await faulty.close()


@pytest.fixture
def stack(aiohttp_client: AiohttpClient, tmp_path: Path, dataservice: str, unique: str) -> StackFactory:
    """Start the whole service: `await stack()` (embedded Redis and events), or
    `await stack(redis_url=redis_db, rabbitmq_url=amqp_url)` for the real servers; any
    other Settings field can be overridden too, `env={...}` changes variables (the plugins'
    own, say), and `plugins=(obj, ...)` registers team plugins beside the installed ones. The
    exchange is unique to the test."""

    async def start(
        env: Mapping[str, str] | None = None, *, plugins: tuple[object, ...] = (), **overrides: Any
    ) -> Client:
        values: dict[str, Any] = {
            "data_service_url": dataservice,
            "pipelines_file": pipelines_for(tmp_path, unique),
            "events_exchange": f"test.{unique}",
        }
        values.update(overrides)
        if values.get("rabbitmq_url"):
            _ON_THE_BROKER.add(unique)
        settings = make_settings(tmp_path, env, **values)
        pm = make_plugin_manager(extra=plugins) if plugins else None
        return await aiohttp_client(create_app(settings, pm=pm))

    return start


async def login(client: Client, email: str, password: str) -> dict[str, Any]:
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    tokens: dict[str, Any] = await resp.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def admin_headers(client: Client) -> dict[str, str]:
    return bearer(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))


async def register(client: Client, email: str, password: str = "correct-horse-1", **extra: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/auth/register", json={"email": email, "password": password, **extra})
    assert resp.status == 201, await resp.text()
    user: dict[str, Any] = await resp.json()
    return user
