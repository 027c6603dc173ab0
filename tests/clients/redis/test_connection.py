from __future__ import annotations

import asyncio
import time

import pytest

from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors
from tests.clients.redis.proxy import eventually_true
from tests.services import start_service, stop_service


async def test_client_is_usable_from_other_tasks_and_ping_is_true(connection: RedisConnection, unique: str) -> None:
    key = f"test:conn:{unique}"

    async def roundtrip(i: int) -> str | None:
        await connection.client.set(f"{key}:{i}", str(i), px=10_000)
        return await connection.client.get(f"{key}:{i}")

    assert await asyncio.gather(*(asyncio.create_task(roundtrip(i)) for i in range(20))) == [str(i) for i in range(20)]
    assert await connection.ping() is True
    await connection.client.delete([f"{key}:{i}" for i in range(20)])


async def test_stop_is_idempotent_and_client_is_gone_after_it(redis_url: str) -> None:
    conn = RedisConnection(redis_url)
    with pytest.raises(RuntimeError, match="not started"):
        _ = conn.client
    assert await conn.ping() is False
    await conn.start()
    await conn.stop()
    await conn.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = conn.client
    await conn.start()  # a stopped connection can be started again
    assert await conn.ping() is True
    await conn.stop()


async def test_same_connection_fails_fast_while_redis_is_stopped_and_recovers(
    connection: RedisConnection, unique: str
) -> None:
    key = f"test:conn:{unique}"
    await connection.client.set(key, "before", px=60_000)
    try:
        await stop_service("redis")

        started = time.monotonic()
        assert await connection.ping() is False
        with pytest.raises(RedisUnavailable), redis_errors():
            await connection.client.get(key)
        assert time.monotonic() - started < 1.0
    finally:
        await start_service("redis")

    assert await eventually_true(connection.ping, within_s=5)
    await connection.client.set(key, "after", px=60_000)
    assert await connection.client.get(key) == "after"
    await connection.client.delete([key])


