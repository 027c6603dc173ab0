"""coredis's patched behaviours: timeouts are not retried, cancelled dials give their pool slot back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import attrs
import coredis
import pytest
from coredis._concurrency import Queue

from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors
from app.clients.redis.patches import read_coredis_flags_once, take_idle
from tests.clients.redis.proxy import Proxy, eventually_true


async def test_hung_server_fails_within_the_timeouts(proxy: Proxy) -> None:
    proxy.mode = "hang"
    await proxy.listen()
    conn = RedisConnection(proxy.url, socket_timeout_s=0.2, connect_timeout_s=0.2)
    await conn.start()
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable), redis_errors():
            await conn.client.get("anything")
        assert time.monotonic() - started < 0.2 + 2 * 0.2 + 0.3

        started = time.monotonic()
        assert await conn.ping() is False
        assert time.monotonic() - started < 0.2 + 2 * 0.2 + 0.3
    finally:
        await conn.stop()


async def test_a_slow_reply_times_out_and_the_connection_stays_in_step(proxy: Proxy) -> None:
    await proxy.listen()
    conn = RedisConnection(proxy.url, socket_timeout_s=0.2, connect_timeout_s=0.5)
    await conn.start()
    try:
        key = f"patches:{uuid.uuid4().hex}"
        await conn.client.set(key, "before")
        proxy.reply_delay_s = 0.6
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="timed out"), redis_errors():
            await conn.client.get(key)
        assert 0.15 < time.monotonic() - started < 0.5
        proxy.reply_delay_s = 0.0
        await asyncio.sleep(0.8)  # the late reply arrives, and belongs to the command that timed out
        await conn.client.set(key, "after")
        assert await conn.client.get(key) == "after"
        assert await conn.client.echo("in step") == "in step"
        await conn.client.delete([key])
    finally:
        await conn.stop()


async def test_commands_waiting_for_a_pool_connection_are_served_in_turn(proxy: Proxy) -> None:
    await proxy.listen()
    conn = RedisConnection(f"{proxy.url}?max_connections=2", socket_timeout_s=2, connect_timeout_s=2)
    await conn.start()
    try:
        replies = await asyncio.gather(*(conn.client.echo(f"n{n}") for n in range(200)))
        assert replies == [f"n{n}" for n in range(200)]
    finally:
        await conn.stop()


@attrs.define
class _Connection:
    reusable: bool = True


async def test_an_idle_connection_is_taken_at_once_only_when_nobody_queues_for_one() -> None:
    idle, dirty = _Connection(), _Connection(reusable=False)
    queue: Queue[_Connection] = Queue(1)  # coredis fills it with free slots (None): one here
    assert take_idle(queue) is None  # a free slot without a connection: the pool dials
    queue.get_nowait()
    queue.put_nowait(idle)
    assert take_idle(queue) is idle
    assert take_idle(queue) is None  # empty: the pool waits
    queue.put_nowait(dirty)  # the pool's own way drops it
    assert take_idle(queue) is None
    queue.get_nowait()
    queue.put_nowait(idle)
    async with queue._lock:  # a caller already waits its turn
        assert take_idle(queue) is None
    assert take_idle(queue) is idle


async def test_callers_cancelled_while_dialing_do_not_exhaust_the_pool(proxy: Proxy) -> None:
    # coredis 6.9 loses a pool slot for each caller cancelled mid-dial; with two slots,
    # five such cancellations would leave every later command waiting forever.
    proxy.mode = "hang"
    await proxy.listen()
    conn = RedisConnection(f"{proxy.url}?max_connections=2", socket_timeout_s=0.3, connect_timeout_s=0.3)
    await conn.start()
    try:
        for _ in range(5):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.client.ping(), 0.05)

        proxy.mode = "forward"

        assert await eventually_true(conn.ping, within_s=5)
        assert await asyncio.wait_for(conn.client.echo("still here"), 2) == "still here"
    finally:
        await conn.stop()




def test_coredis_reads_its_environment_flags_once_not_per_command(monkeypatch: pytest.MonkeyPatch) -> None:
    read_coredis_flags_once()
    read_coredis_flags_once()  # idempotent: one cache, not a cache of a cache
    before = coredis.Config.otel_enabled
    monkeypatch.setenv("COREDIS_OTEL_ENABLED", "0" if before else "1")
    assert coredis.Config.otel_enabled is before  # the first answer is kept
    assert coredis.config._env_truthy.__wrapped__("COREDIS_OTEL_ENABLED") is not before  # type: ignore[attr-defined]
