"""The owner task: the connection starts whatever Redis does, and its client works once Redis answers."""

from __future__ import annotations

import gc
import time

import pytest

from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors
from tests.clients.redis.proxy import Proxy, eventually_true, free_port


async def test_start_succeeds_while_redis_is_down_and_client_works_once_it_is_up(proxy: Proxy) -> None:
    conn = RedisConnection(proxy.url, socket_timeout_s=0.2, connect_timeout_s=0.2)
    started = time.monotonic()
    await conn.start()  # nothing listens on the proxy's port yet
    try:
        assert time.monotonic() - started < 1.0
        assert await conn.ping() is False
        with pytest.raises(RedisUnavailable, match="ConnectionError"), redis_errors():
            await conn.client.ping()

        await proxy.listen()

        assert await eventually_true(conn.ping, within_s=5)
        assert await conn.client.echo("hello") == "hello"
    finally:
        await conn.stop()


@pytest.mark.parametrize(
    "template",
    [
        "redis+sentinel://127.0.0.1:{port}/mymaster/0",
        pytest.param(
            "redis+cluster://127.0.0.1:{port}",
            # coredis's cluster discovery dials outside the pool, and a failed dial leaves its
            # buffers unclosed (a ResourceWarning at collection, harmless otherwise).
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
            id="cluster",
        ),
    ],
)
async def test_sentinel_and_cluster_forms_start_and_stop_with_nothing_listening(template: str) -> None:
    # No sentinel or cluster runs here: this checks the wiring and the degraded start only.
    conn = RedisConnection(template.format(port=free_port()), socket_timeout_s=0.2, connect_timeout_s=0.2)
    started = time.monotonic()
    await conn.start()
    try:
        assert time.monotonic() - started < 1.0
        assert await conn.ping() is False
        with pytest.raises(RedisUnavailable), redis_errors():
            await conn.client.get("anything")
    finally:
        await conn.stop()
        gc.collect()  # let any unclosed-buffer warning fire here, under this test's filter
