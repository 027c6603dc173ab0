"""The per-user index of sessions, in memory and on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import coredis
import pytest

from app import RedisConnection
from plugins.auth.sessions import MemorySessionIndex, RedisSessionIndex, SessionIndex, SessionTimes

INDEX_DB = 12


@pytest.fixture
async def redis_index(redis_url: str, unique: str) -> AsyncIterator[RedisSessionIndex]:
    if "cluster" in redis_url:
        # A cluster has no database numbers: the test's own key prefix keeps it apart.
        url, prefix = redis_url, f"test:{unique}:"
    else:
        url, prefix = redis_url.rsplit("/", 1)[0] + f"/{INDEX_DB}", "turnstile:auth:"
        raw: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
        async with raw:
            await raw.flushdb()
    connection = RedisConnection(url)
    await connection.start()
    try:
        yield RedisSessionIndex(connection, prefix=prefix)
    finally:
        await connection.stop()


@pytest.fixture(params=["memory", "redis"])
def index(request: pytest.FixtureRequest) -> SessionIndex:
    if request.param == "redis":
        redis_index: RedisSessionIndex = request.getfixturevalue("redis_index")
        return redis_index
    return MemorySessionIndex()


async def test_sessions_are_kept_per_user_with_their_times(index: SessionIndex) -> None:
    await index.started(7, "a" * 32, 100.0, 60)
    await index.started(7, "b" * 32, 110.5, 60)
    await index.started(8, "c" * 32, 120.0, 60)
    await index.used(7, "a" * 32, 130.25, 60)
    await index.used(7, "f" * 32, 140.0, 60)  # never started here: not invented
    assert await index.of(7) == {"a" * 32: SessionTimes(100.0, 130.25), "b" * 32: SessionTimes(110.5, 110.5)}
    await index.forget(7, "a" * 32)
    assert set(await index.of(7)) == {"b" * 32}
    assert set(await index.of(8)) == {"c" * 32}


async def test_an_index_entry_expires_with_the_sessions_it_holds(index: SessionIndex) -> None:
    await index.started(7, "a" * 32, 100.0, 1)
    await asyncio.sleep(1.2)
    assert await index.of(7) == {}


async def test_a_deleted_users_entries_are_dropped_whole_and_no_one_elses(index: SessionIndex) -> None:
    await index.started(7, "a" * 32, 100.0, 60)
    await index.started(7, "b" * 32, 110.0, 60)
    await index.started(8, "c" * 32, 120.0, 60)
    await index.forget_user(7)
    await index.forget_user(9)  # nothing indexed: nothing to do
    assert await index.of(7) == {}
    assert set(await index.of(8)) == {"c" * 32}
