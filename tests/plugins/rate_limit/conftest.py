from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.clients.redis import RedisConnection


@pytest.fixture
async def redis_connection(redis_url: str) -> AsyncIterator[RedisConnection]:
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        yield connection
    finally:
        await connection.stop()
