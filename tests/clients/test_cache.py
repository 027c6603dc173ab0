from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from app.clients.cache import CacheBackend, CacheUnavailable, LeaseClaim, MemoryCache, RedisCache
from app.clients.redis import RedisConnection
from tests.clients.redis.proxy import Proxy
from tests.services import is_cluster, start_service, stop_service


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix(unique: str) -> str:
    return f"test:cache:{unique}:"


@pytest.fixture
async def redis_connection(redis_url: str, prefix: str) -> AsyncIterator[RedisConnection]:
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        yield connection
        keys = await connection.client.keys(f"{prefix}*")
        if keys:
            await connection.client.delete(list(keys))
    finally:
        await connection.stop()


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest, prefix: str) -> CacheBackend:
    # A plain fixture: pytest-asyncio cannot resolve an async fixture from inside another one.
    if request.param == "memory":
        return MemoryCache()
    return RedisCache(request.getfixturevalue("redis_connection"), prefix=prefix)


async def test_get_returns_what_set_stored(backend: CacheBackend) -> None:
    value = orjson.dumps({"id": 7, "email": "a@example.com", "full_name": "Zoë ✓"})
    assert await backend.get("user:7") is None

    await backend.set("user:7", value, ttl_s=60)

    assert await backend.get("user:7") == value


async def test_values_are_bytes_even_when_not_utf8(backend: CacheBackend) -> None:
    value = bytes(range(256))
    await backend.set("blob", value, ttl_s=60)
    assert await backend.get("blob") == value


async def test_set_overwrites_and_delete_drops_keys(backend: CacheBackend) -> None:
    await backend.set("a", b"1", ttl_s=60)
    await backend.set("a", b"2", ttl_s=60)
    await backend.set("b", b"3", ttl_s=60)
    assert await backend.get("a") == b"2"

    await backend.delete("a", "b", "never-set")
    await backend.delete()

    assert await backend.get("a") is None
    assert await backend.get("b") is None


async def test_add_stores_only_when_the_key_holds_nothing(backend: CacheBackend) -> None:
    assert await backend.add("k", b"first", ttl_s=60) is True
    assert await backend.add("k", b"second", ttl_s=60) is False
    assert await backend.get("k") == b"first"

    await backend.set("k", b"replaced", ttl_s=60)
    assert await backend.add("k", b"third", ttl_s=60) is False
    assert await backend.get("k") == b"replaced"


async def test_add_stores_again_once_the_entry_expired(backend: CacheBackend) -> None:
    await backend.set("k", b"old", ttl_s=0.15)
    await asyncio.sleep(0.3)

    assert await backend.add("k", b"new", ttl_s=60) is True
    assert await backend.get("k") == b"new"


async def test_replace_stores_only_when_the_key_holds_exactly_the_expected_value(backend: CacheBackend) -> None:
    await backend.set("k", b"\x00tombstone:1", ttl_s=60)

    assert await backend.replace("k", b"\x00tombstone:0", b"stale", ttl_s=60) is False  # mismatch
    assert await backend.get("k") == b"\x00tombstone:1"
    assert await backend.replace("k", b"\x00tombstone:1", b"fresh", ttl_s=60) is True  # match
    assert await backend.get("k") == b"fresh"
    assert await backend.replace("k", b"\x00tombstone:1", b"again", ttl_s=60) is False  # no longer holds it
    assert await backend.get("k") == b"fresh"
    assert await backend.replace("absent", b"\x00tombstone:1", b"x", ttl_s=60) is False
    assert await backend.get("absent") is None


async def test_replace_gives_the_new_value_its_own_ttl(backend: CacheBackend) -> None:
    await backend.set("k", b"t", ttl_s=60)
    assert await backend.replace("k", b"t", b"short", ttl_s=0.15) is True
    await asyncio.sleep(0.3)
    assert await backend.get("k") is None


async def test_replace_refuses_an_expired_key(backend: CacheBackend) -> None:
    await backend.set("k", b"t", ttl_s=0.15)
    await asyncio.sleep(0.3)

    assert await backend.replace("k", b"t", b"late", ttl_s=60) is False
    assert await backend.get("k") is None


async def test_entries_expire_after_their_ttl(backend: CacheBackend) -> None:
    await backend.set("short", b"x", ttl_s=0.15)
    await backend.set("long", b"y", ttl_s=60)
    assert await backend.get("short") == b"x"

    await asyncio.sleep(0.3)

    assert await backend.get("short") is None
    assert await backend.get("long") == b"y"


class Leases:
    """What a cache step gives `read`: numbered leases, and the ones that did not win."""

    def __init__(self) -> None:
        self.made = 0
        self.lost: list[bytes] = []

    def new(self) -> bytes:
        self.made += 1
        return f"lease-{self.made}".encode()

    def claim(self, ttl_s: float = 60, not_answer: bytes | None = None) -> LeaseClaim:
        return LeaseClaim(new_lease=self.new, lost=self.lost.append, ttl_s=ttl_s, not_answers=b"\x00tomb:",
                          not_answer=not_answer)


async def test_of_many_reads_of_a_missing_key_one_claims_its_fetch_and_the_others_see_its_lease(
    backend: CacheBackend,
) -> None:
    leases = Leases()
    reads = await asyncio.gather(*(backend.read("user:7", leases.claim()) for _ in range(10)))
    won = [read.lease for read in reads if read.lease is not None]
    assert len(won) == 1
    assert {read.holder for read in reads if read.lease is None} == {won[0]}
    assert {read.value for read in reads} == {None}
    assert len(leases.lost) == leases.made - 1  # every lease made and not won is told


async def test_an_answer_is_read_without_a_claim(backend: CacheBackend) -> None:
    leases = Leases()
    await backend.set("user:7", b'{"id":7}', ttl_s=60)
    read = await backend.read("user:7", leases.claim())
    assert (read.value, read.lease, read.holder) == (b'{"id":7}', None, None)
    await backend.set("user:8", b"\x00tomb:1", ttl_s=60)  # no answer: claimed
    assert (await backend.read("user:8", leases.claim())).lease is not None
    await backend.set("user:9", b"404", ttl_s=60)  # a value the caller says is none
    assert (await backend.read("user:9", leases.claim(not_answer=b"404"))).lease is not None


async def test_a_fill_stores_as_add_or_replace_and_frees_the_lease(backend: CacheBackend) -> None:
    leases = Leases()
    first = await backend.read("user:7", leases.claim())
    assert first.lease is not None
    assert await backend.fill("user:7", None, b'{"id":7}', 60, first.lease)
    assert await backend.get("user:7") == b'{"id":7}'

    await backend.set("user:7", b"\x00tomb:1", ttl_s=60)  # a write
    second = await backend.read("user:7", leases.claim())
    assert second.lease is not None  # the fill freed the lease
    await backend.set("user:7", b"\x00tomb:2", ttl_s=60)  # another write while fetching
    assert not await backend.fill("user:7", b"\x00tomb:1", b'{"id":7,"v":1}', 60, second.lease)
    third = await backend.read("user:7", leases.claim())
    assert third.lease is not None  # freed though not stored


async def test_a_lease_taken_before_the_key_changed_is_taken_over(backend: CacheBackend) -> None:
    # A fetch that began before a write must not keep the reads after it waiting.
    leases = Leases()
    old = await backend.read("user:7", leases.claim())
    await backend.set("user:7", b"\x00tomb:1", ttl_s=60)
    new = await backend.read("user:7", leases.claim())
    assert old.lease is not None
    assert new.lease is not None
    assert new.lease != old.lease
    assert (await backend.read("user:7", leases.claim())).holder == new.lease


async def test_a_lease_is_free_again_when_released_or_when_its_time_ends(backend: CacheBackend) -> None:
    leases = Leases()
    first = await backend.read("user:7", leases.claim())
    assert first.lease is not None
    await backend.release("user:7", first.lease)
    second = await backend.read("user:7", leases.claim(ttl_s=0.05))
    assert second.lease is not None
    assert (await backend.read("user:7", leases.claim())).holder == second.lease
    await asyncio.sleep(0.15)
    assert (await backend.read("user:7", leases.claim())).lease is not None


async def test_a_release_of_a_lease_taken_over_leaves_the_new_one(backend: CacheBackend) -> None:
    leases = Leases()
    old = await backend.read("user:7", leases.claim())
    await backend.set("user:7", b"\x00tomb:1", ttl_s=60)
    new = await backend.read("user:7", leases.claim())
    assert old.lease is not None
    await backend.release("user:7", old.lease)
    assert (await backend.read("user:7", leases.claim())).holder == new.lease


@pytest.mark.parametrize("ttl_s", [0, -1, float("inf"), float("nan")])
async def test_non_positive_or_infinite_ttl_is_refused(backend: CacheBackend, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="TTL"):
        await backend.set("k", b"v", ttl_s=ttl_s)
    with pytest.raises(ValueError, match="TTL"):
        await backend.add("k", b"v", ttl_s=ttl_s)
    with pytest.raises(ValueError, match="TTL"):
        await backend.replace("k", b"v", b"w", ttl_s=ttl_s)


async def test_backends_name_themselves(redis_connection: RedisConnection) -> None:
    assert RedisCache(redis_connection).name == "redis"
    assert MemoryCache().name == "memory"


async def test_redis_cache_prefixes_every_key(redis_connection: RedisConnection, prefix: str) -> None:
    cache = RedisCache(redis_connection, prefix=prefix)
    await cache.set("user:1", b"{}", ttl_s=60)

    assert await redis_connection.client.get(f"{prefix}user:1") == "{}"
    assert 0 < await redis_connection.client.pttl(f"{prefix}user:1") <= 60_000
    await cache.delete("user:1")
    assert await redis_connection.client.exists([f"{prefix}user:1"]) == 0


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1", ttl_s=60)
    await cache.set("b", b"2", ttl_s=60)
    assert await cache.get("a") == b"1"  # "b" is now the least recently used

    await cache.set("c", b"3", ttl_s=60)

    assert len(cache) == 2
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"
    assert await cache.get("c") == b"3"


async def test_memory_cache_rewrite_refreshes_recency() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1", ttl_s=60)
    await cache.set("b", b"2", ttl_s=60)
    await cache.set("a", b"1'", ttl_s=60)

    await cache.set("c", b"3", ttl_s=60)

    assert await cache.get("a") == b"1'"
    assert await cache.get("b") is None


async def test_memory_cache_ttl_follows_the_clock_and_drops_expired_entries() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("k", b"v", ttl_s=10)

    clock.now += 9.999
    assert await cache.get("k") == b"v"
    clock.now += 0.001
    assert await cache.get("k") is None
    assert len(cache) == 0


def test_memory_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


async def test_redis_cache_is_unavailable_while_redis_is_stopped_then_recovers(
    redis_connection: RedisConnection, prefix: str
) -> None:
    cache = RedisCache(redis_connection, prefix=prefix)
    await cache.set("k", b"before", ttl_s=60)
    assert await cache.replace("k", b"before", b"before", ttl_s=60) is True  # the server now has the script
    try:
        await stop_service("redis")
        for call in (
            cache.get("k"),
            cache.set("k", b"x", ttl_s=60),
            cache.add("k", b"x", ttl_s=60),
            cache.replace("k", b"before", b"x", ttl_s=60),
            cache.delete("k"),
        ):
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await call
            assert time.monotonic() - started < 1.0
    finally:
        await start_service("redis")

    deadline = time.monotonic() + 5
    while True:
        try:
            await cache.set("k", b"after", ttl_s=60)
            break
        except CacheUnavailable:
            assert time.monotonic() < deadline, "the cache did not come back"
            await asyncio.sleep(0.05)
    assert await cache.get("k") == b"after"
    # The restarted server lost its script cache: replace loads the script again.
    assert await cache.replace("k", b"after", b"replaced", ttl_s=60) is True
    assert await cache.get("k") == b"replaced"
    await cache.delete("k")


async def test_a_write_deferred_during_an_outage_is_made_before_the_key_is_read_again(
    redis_url: str, prefix: str
) -> None:
    if is_cluster(redis_url):
        pytest.skip("the outage is a proxy in front of one server; the cluster's is in tests/integration")
    proxy = Proxy(redis_url)
    await proxy.listen()
    connection = RedisConnection(proxy.url, health_interval_s=0.1)
    await connection.start()
    try:
        cache = RedisCache(connection, prefix=prefix)
        await cache.set("k", b"stale", ttl_s=60)
        await proxy.close()  # Redis keeps its data; this process cannot reach it

        assert await cache.set_or_defer("k", b"fresh", ttl_s=60) is False
        with pytest.raises(CacheUnavailable, match="waits for Redis"):
            await cache.get("k")

        await proxy.listen()
        seen: list[bytes | None] = []
        deadline = time.monotonic() + 5
        while not seen or seen[-1] != b"fresh":
            assert time.monotonic() < deadline, f"the deferred write was not made: {seen}"
            with contextlib.suppress(CacheUnavailable):
                seen.append(await cache.get("k"))
            await asyncio.sleep(0.01)
        assert b"stale" not in seen  # never read from Redis before the deferred write was made
        assert len(connection.pending) == 0
        await cache.delete("k")
    finally:
        await connection.stop()
        await proxy.close()


async def test_the_memory_cache_never_defers() -> None:
    cache = MemoryCache()
    assert await cache.set_or_defer("k", b"v", ttl_s=60) is True
    assert await cache.get("k") == b"v"
