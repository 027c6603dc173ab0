from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.clients.redis import RedisConnection
from tests.clients.redis.proxy import Proxy


@pytest.fixture
async def connection(redis_url: str) -> AsyncIterator[RedisConnection]:
    conn = RedisConnection(redis_url)
    await conn.start()
    try:
        yield conn
    finally:
        await conn.stop()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[Proxy]:
    p = Proxy(redis_url)
    try:
        yield p
    finally:
        await p.close()


