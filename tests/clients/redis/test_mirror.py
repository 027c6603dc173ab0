"""The local mirror of hot Redis keys: served from memory, never stale (app/clients/redis/mirror.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from app.clients.cache import RedisCache
from app.clients.redis import RedisConnection
from app.clients.redis.mirror import MISSING, LocalMirror
from plugins.auth.revocations import RedisRevocations
from plugins.cache.markers import new_tombstone
from tests.clients.redis.proxy import Proxy


@pytest.fixture
def prefix(unique: str) -> str:
    return f"test:mirror:{unique}:"


async def until(check: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


async def started(url: str, prefix: str) -> RedisConnection:
    connection = RedisConnection(url, mirror_prefixes=(prefix,), socket_timeout_s=0.3, connect_timeout_s=0.3)
    await connection.start()
    assert connection.mirror is not None
    assert await until(lambda: connection.mirror is not None and connection.mirror.live)
    return connection


@pytest.fixture
async def mirrored(redis_url: str, prefix: str) -> AsyncIterator[RedisConnection]:
    connection = await started(redis_url, prefix)
    try:
        yield connection
    finally:
        await connection.stop()


@pytest.fixture
async def other(redis_url: str, prefix: str) -> AsyncIterator[RedisConnection]:
    """Another instance's connection (no mirror): its writes must reach the mirrored one."""
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        yield connection
        keys = await connection.client.keys(f"{prefix}*")
        if keys:
            await connection.client.delete(list(keys))
    finally:
        await connection.stop()


async def written(connection: RedisConnection, key: str, value: str) -> None:
    """SET through `connection`, then let its invalidation push arrive before the test reads."""
    await connection.client.set(key, value)
    await asyncio.sleep(0.1)


async def get_calls(connection: RedisConnection) -> int:
    stats = await connection.client.info("commandstats")
    entry = stats.get("cmdstat_get")
    return int(entry["calls"]) if isinstance(entry, dict) else 0


async def test_a_key_read_once_is_served_from_memory_until_another_client_writes_it(
    mirrored: RedisConnection, other: RedisConnection, prefix: str
) -> None:
    key = f"{prefix}k"
    await written(other, key, "one")
    assert await mirrored.get(key) == "one"
    before = await get_calls(other)
    for _ in range(20):
        assert await mirrored.get(key) == "one"
    assert await get_calls(other) == before  # no GET reached Redis

    await other.client.set(key, "two")  # another instance's write
    assert mirrored.mirror is not None
    assert await until(lambda: mirrored.mirror is not None and key not in mirrored.mirror._entries)
    assert await mirrored.get(key) == "two"
    await other.client.delete([key])
    assert await until(lambda: mirrored.mirror is not None and key not in mirrored.mirror._entries)
    assert await mirrored.get(key) is None


async def test_a_missing_key_is_mirrored_and_its_creation_elsewhere_is_seen(
    mirrored: RedisConnection, other: RedisConnection, prefix: str
) -> None:
    key = f"{prefix}absent"
    assert await mirrored.get(key) is None
    before = await get_calls(other)
    assert await mirrored.get(key) is None
    assert await get_calls(other) == before
    await other.client.set(key, "now")
    assert await until(lambda: mirrored.mirror is not None and key not in mirrored.mirror._entries)
    assert await mirrored.get(key) == "now"


async def test_keys_outside_the_prefixes_are_never_kept(mirrored: RedisConnection, other: RedisConnection) -> None:
    key = "test:not-mirrored"
    await other.client.set(key, "x", px=10_000)
    assert await mirrored.get(key) == "x"
    assert mirrored.mirror is not None
    assert len(mirrored.mirror) == 0


async def test_revocation_on_one_instance_is_seen_by_another_instances_next_check(
    redis_url: str, other: RedisConnection, unique: str
) -> None:
    prefix = f"test:mirror:{unique}:auth:"
    reader = await started(redis_url, f"{prefix}revoked:")
    try:
        a = RedisRevocations(other, ttl_s=60, prefix=prefix)
        b = RedisRevocations(reader, ttl_s=60, prefix=prefix)
        await b.fill(7, None)  # the record has no cut-off
        assert await b.get(7) is None
        assert await b.get(7) is None  # now from memory
        await a.raise_to(7, 1234.5)
        assert await until(lambda: reader.mirror is not None and len(reader.mirror) == 0, within_s=1.0)
        assert await b.get(7) == 1234.5
    finally:
        await reader.stop()
        await other.client.delete([f"{prefix}revoked:7"])


async def test_own_writes_drop_the_copy_at_once(mirrored: RedisConnection, prefix: str) -> None:
    cache = RedisCache(mirrored, prefix=prefix)
    await cache.set("user:1", b"old", 60)
    assert await cache.get("user:1") == b"old"
    await cache.delete("user:1")
    assert await cache.get("user:1") is None  # no wait for the push
    await cache.set("user:1", b"new", 60)
    assert await cache.get("user:1") == b"new"
    await cache.delete("user:1")


async def test_another_instances_tombstone_replaces_the_mirrored_copy(
    mirrored: RedisConnection, other: RedisConnection, prefix: str
) -> None:
    reader, writer = RedisCache(mirrored, prefix=prefix), RedisCache(other, prefix=prefix)
    await writer.set("user:2", b"old", 60)
    assert await reader.get("user:2") == b"old"
    assert await reader.get("user:2") == b"old"  # now from memory

    tombstone = new_tombstone()
    await writer.set("user:2", tombstone, 5)  # cache-invalidate on another instance

    assert await until(lambda: mirrored.mirror is not None and len(mirrored.mirror) == 0, within_s=1.0)
    assert await reader.get("user:2") == tombstone
    assert await reader.add("user:2", b"old", 60) is False  # a late fill of the old record
    assert await reader.get("user:2") == tombstone


async def test_a_flush_drops_every_copy(mirrored: RedisConnection, other: RedisConnection, prefix: str) -> None:
    assert mirrored.mirror is not None
    await mirrored.get(f"{prefix}x")
    assert len(mirrored.mirror) == 1
    mirrored.mirror._on_push(["invalidate", None])  # what FLUSHDB pushes (not run on a shared server)
    assert len(mirrored.mirror) == 0


async def test_expiry_in_redis_drops_the_copy(mirrored: RedisConnection, other: RedisConnection, prefix: str) -> None:
    key = f"{prefix}short"
    await other.client.set(key, "v", px=400)
    await asyncio.sleep(0.1)
    assert await mirrored.get(key) == "v"
    assert mirrored.mirror is not None
    assert len(mirrored.mirror) == 1  # served from memory from now on
    # Nobody reads the key in Redis: its active expiry deletes it and pushes the invalidation.
    assert await until(lambda: mirrored.mirror is not None and len(mirrored.mirror) == 0, within_s=3)
    assert await mirrored.get(key) is None


async def test_copies_are_dropped_when_the_tracking_connection_drops(
    redis_url: str, other: RedisConnection, prefix: str
) -> None:
    """A Redis restart (or any lost connection) may hide writes: nothing read before is served after."""
    proxy = Proxy(redis_url)
    await proxy.listen()
    connection = await started(proxy.url, prefix)
    mirror = connection.mirror
    assert mirror is not None
    key = f"{prefix}k"
    try:
        await written(other, key, "before")
        assert await connection.get(key) == "before"
        assert len(mirror) == 1

        await proxy.close()  # every connection through the proxy drops: no more pushes
        assert await until(lambda: not mirror.live)
        assert len(mirror) == 0
        assert mirror.lookup(key) is MISSING
        await other.client.set(key, "after")  # a write this process is not told about

        await proxy.listen()
        assert await until(lambda: mirror.live, within_s=10)
        assert await connection.get(key) == "after"
    finally:
        await connection.stop()
        await proxy.close()


def test_a_reply_overtaken_by_an_invalidation_is_not_kept() -> None:
    class Up:
        usable = True

    mirror = LocalMirror(("p:",))
    mirror._connection = Up()
    ticket = mirror.begin("p:k")
    mirror._on_push([b"invalidate", [b"p:k"]])  # the write landed after the read was sent
    mirror.complete("p:k", ticket, "old")
    assert mirror.lookup("p:k") is MISSING

    first, second = mirror.begin("p:k"), mirror.begin("p:k")
    mirror.complete("p:k", first, "a")
    mirror.complete("p:k", second, "b")
    assert mirror.lookup("p:k") == "b"

    mirror._connection = None  # tracking lost: nothing is served, nothing kept
    assert mirror.lookup("p:k") is MISSING
    assert mirror.begin("p:other") is None


def test_overlapping_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        LocalMirror(("a:", "a:b:"))


def test_the_mirror_is_bounded() -> None:
    class Up:
        usable = True

    mirror = LocalMirror(("p:",), max_entries=2)
    mirror._connection = Up()
    for key in ("p:1", "p:2", "p:3"):
        mirror.complete(key, mirror.begin(key), key)
    assert len(mirror) == 2
    assert mirror.lookup("p:1") is MISSING


async def test_a_silent_tracking_connection_stops_the_mirror_within_a_ping(
    redis_url: str, other: RedisConnection, prefix: str
) -> None:
    proxy = Proxy(redis_url)
    await proxy.listen()
    connection = await started(proxy.url, prefix)
    mirror = connection.mirror
    assert mirror is not None
    key = f"{prefix}k"
    try:
        await written(other, key, "before")
        assert await connection.get(key) == "before"
        assert len(mirror) == 1
        proxy.paused = True  # invalidations would be lost from here on
        paused_at = time.monotonic()
        assert await until(lambda: not mirror.live, within_s=5)
        assert time.monotonic() - paused_at < 1.0 + 0.6 + 0.5  # ping interval + timeout + slack
        assert mirror.lookup(key) is MISSING  # not live: the copy is never served again
        # The copies are dropped as the tracking task unwinds, a moment after it stops being live.
        assert await until(lambda: len(mirror) == 0, within_s=1)
    finally:
        await connection.stop()
        await proxy.close()


async def test_a_node_that_is_not_the_primary_is_not_trusted(redis_url: str, prefix: str) -> None:
    """Sentinel: the mirror checks ROLE, so a demoted old primary stops it."""
    connection = RedisConnection(redis_url, mirror_prefixes=(prefix,))
    assert connection.mirror is not None
    checked = LocalMirror((prefix,), check_primary=True)
    connection.mirror = checked
    await connection.start()
    try:
        assert await until(lambda: checked.live)  # the test server is a primary

        class Replica:
            usable = True

            async def create_request(self, command: bytes, *args: object, decode: bool) -> object:
                return [b"slave", b"127.0.0.1", 6379, b"connected", 0]

        with pytest.raises(ConnectionError, match="no longer the primary"):
            await checked._check(Replica())
    finally:
        await connection.stop()


async def test_own_replace_drops_the_copy_at_once(mirrored: RedisConnection, prefix: str) -> None:
    cache = RedisCache(mirrored, prefix=prefix)
    tombstone = new_tombstone()
    await cache.set("user:3", tombstone, 60)
    assert await cache.get("user:3") == tombstone
    assert await cache.get("user:3") == tombstone  # now from memory
    assert mirrored.mirror is not None
    assert len(mirrored.mirror) == 1

    assert await cache.replace("user:3", tombstone, b"fresh", 60) is True
    assert len(mirrored.mirror) == 0
    assert await cache.get("user:3") == b"fresh"  # no wait for the push
    await cache.delete("user:3")


async def test_a_watcher_hears_every_write_under_its_prefix_by_any_client(
    mirrored: RedisConnection, other: RedisConnection, prefix: str
) -> None:
    assert mirrored.mirror is not None
    heard: list[str] = []

    def failing(keys: list[str]) -> None:
        raise RuntimeError(keys)

    mirrored.mirror.watch(f"{prefix}w:", failing)  # a watcher's failure stops neither the others nor the pushes
    mirrored.mirror.watch(f"{prefix}w:", heard.extend)
    with pytest.raises(ValueError, match="under no mirrored prefix"):
        mirrored.mirror.watch("test:elsewhere:", heard.extend)

    await other.client.set(f"{prefix}w:1", "x")  # never read here, heard all the same
    await other.client.set(f"{prefix}other", "x")  # under the mirrored prefix, not the watched one
    await other.client.delete([f"{prefix}w:1"])
    assert await until(lambda: heard == [f"{prefix}w:1", f"{prefix}w:1"])
    assert await mirrored.get(f"{prefix}w:1") is None
