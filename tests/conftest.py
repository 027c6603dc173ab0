from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.clients.redis import RedisConnection
from tests.content_coding import count_aiohttp_inflation
from tests.services import ACME_PLUGIN, RABBITMQ_URL, REDIS_CLUSTER_URL, REDIS_URL, require
from tests.snapshot_redis import SnapshotRedis

# ACME's example plugin package is on the tests' path (setup.cfg), not installed in the product's
# virtualenv: the processes the tests start with the environment as it is find it there too.
if str(ACME_PLUGIN) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ACME_PLUGIN), os.environ.get("PYTHONPATH"))))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After each test module, collect its garbage and freeze what survives, as `turnstile serve`
    does after start-up (app/collector.py).

    The run keeps what every test module left alive (their metrics series, for one: each test
    names its pipelines afresh). By the end, a full collection walked ~800,000 objects and held
    the event loop, which each test's servers and clients share, for up to 0.8 s: past a
    1 s connect timeout. Frozen objects are never walked again, so a collection walks one
    module's worth.
    """
    yield
    if nextitem is None or nextitem.module is not item.module:  # type: ignore[attr-defined]
        gc.collect()
        gc.freeze()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require(REDIS_URL, "Redis")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The test Redis Cluster (three masters; the test command starts it)."""
    return require(REDIS_CLUSTER_URL, "Redis Cluster")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return require(RABBITMQ_URL, "RabbitMQ")


@pytest.fixture
def unique() -> str:
    """A short random name to isolate a test's keys, queues and exchanges."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def redis_connection(redis_url: str) -> AsyncIterator[RedisConnection]:
    """A started RedisConnection to the real Redis, stopped after the test."""
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        yield connection
    finally:
        await connection.stop()


@pytest.fixture
def inflated_by_aiohttp(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes aiohttp's own decompressor produced during the test, call by call: a server
    of this project inflates request bodies itself, within its limit (never aiohttp)."""
    return count_aiohttp_inflation(monkeypatch)


@pytest.fixture
async def snapshot_redis(tmp_path: Path) -> AsyncIterator[SnapshotRedis]:
    """A redis-server of the test's own, which it may roll back or restart empty."""
    server = SnapshotRedis(tmp_path)
    await server.start()
    yield server
    server.stop()
