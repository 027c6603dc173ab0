from __future__ import annotations

import asyncio

import pytest

from app import MemoryWindowCounter, RedisWindowCounter, WindowCounter
from app.clients.redis import RedisConnection


@pytest.fixture(params=["redis", "memory"])
def counter(request: pytest.FixtureRequest) -> WindowCounter:
    # A plain fixture: pytest-asyncio cannot resolve an async fixture from inside another one.
    if request.param == "memory":
        return MemoryWindowCounter()
    connection: RedisConnection = request.getfixturevalue("redis_connection")
    return RedisWindowCounter(connection)


async def test_hits_count_up_within_the_window(counter: WindowCounter, unique: str) -> None:
    key = f"turnstile:rl:test:{unique}"
    results = [await counter.hit(key, 60_000) for _ in range(3)]
    assert [hits for hits, _ in results] == [1, 2, 3]
    assert all(0 < left_ms <= 60_000 for _, left_ms in results)


async def test_keys_are_counted_apart(counter: WindowCounter, unique: str) -> None:
    await counter.hit(f"turnstile:rl:test:{unique}:a", 60_000)
    assert (await counter.hit(f"turnstile:rl:test:{unique}:b", 60_000))[0] == 1


async def test_a_new_window_starts_after_the_last_one_ends(counter: WindowCounter, unique: str) -> None:
    key = f"turnstile:rl:test:{unique}"
    await counter.hit(key, 100)
    await counter.hit(key, 100)
    await asyncio.sleep(0.2)
    hits, left_ms = await counter.hit(key, 100)
    assert hits == 1
    assert 0 < left_ms <= 100


async def test_redis_counter_expires_its_key(redis_connection: RedisConnection, unique: str) -> None:
    key = f"turnstile:rl:test:{unique}"
    await RedisWindowCounter(redis_connection).hit(key, 5_000)
    ttl_ms = await redis_connection.client.pttl(key)
    assert 0 < ttl_ms <= 5_000


async def test_memory_counter_stays_within_its_bound() -> None:
    counter = MemoryWindowCounter(max_keys=3)
    for n in range(10):
        await counter.hit(f"k{n}", 60_000)
    assert len(counter) == 3
    # The least recently hit keys were dropped; the newest ones keep counting.
    assert (await counter.hit("k9", 60_000))[0] == 2
    assert (await counter.hit("k0", 60_000))[0] == 1


async def test_memory_counter_reports_time_left_on_its_clock() -> None:
    now = [100.0]
    counter = MemoryWindowCounter(clock=lambda: now[0])
    await counter.hit("k", 10_000)
    now[0] += 4.0
    assert await counter.hit("k", 10_000) == (2, 6_000)
    now[0] += 6.0
    assert await counter.hit("k", 10_000) == (1, 10_000)
