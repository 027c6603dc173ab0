from __future__ import annotations

import pytest
from aiohttp import web

from app import Templates
from app.clients.cache import CacheUnavailable, LeaseClaim, MemoryCache, Read
from app.models.events import Event
from app.pipeline.types import SubscriptionContext
from plugins.cache.backend import cache_backend_key
from plugins.cache.config import CacheInvalidateConfig
from plugins.cache.invalidate import build_for_message
from plugins.cache.made import MadeInvalidations, made_invalidations_key
from plugins.cache.markers import is_tombstone


class DownCache:
    name = "redis"

    async def get(self, key: str) -> bytes | None:
        raise CacheUnavailable("down")

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise CacheUnavailable("down")

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        raise CacheUnavailable("down")

    async def replace(self, key: str, expected: bytes, value: bytes, ttl_s: float) -> bool:
        raise CacheUnavailable("down")

    async def delete(self, *keys: str) -> None:
        raise CacheUnavailable("down")

    async def set_or_defer(self, key: str, value: bytes, ttl_s: float) -> bool:
        self.deferred.append(key)
        return False

    async def read(self, key: str, claim: LeaseClaim, *, fresh: bool = False) -> Read:
        raise CacheUnavailable("down")

    async def fill(self, key: str, seen: bytes | None, value: bytes, ttl_s: float, lease: bytes) -> bool:
        raise CacheUnavailable("down")

    async def release(self, key: str, lease: bytes) -> None:
        raise CacheUnavailable("down")

    def __init__(self) -> None:
        self.deferred: list[str] = []


async def nothing_else(event: Event) -> None:
    return None


async def test_event_data_fills_the_keys_which_get_a_tombstone() -> None:
    cache = MemoryCache()
    await cache.set("user:7", b"{}", 60)
    await cache.set("user:8", b"{}", 60)
    config = CacheInvalidateConfig(keys=Templates(("user:{id}",)), tombstone_ttl_s=5)
    step = build_for_message(config, SubscriptionContext(_app(cache), "invalidate_users"))

    await step(Event.create("user.updated", {"id": 7, "email": "a@example.com"}, "req-1"), nothing_else)

    first = await cache.get("user:7")
    assert first is not None
    assert is_tombstone(first)
    assert await cache.add("user:7", b"old", 60) is False  # a fill racing the event cannot store
    assert await cache.get("user:8") == b"{}"

    await step(Event.create("user.updated", {"id": 7, "email": "b@example.com"}, "req-2"), nothing_else)
    second = await cache.get("user:7")
    assert is_tombstone(second)
    assert second != first  # unique per invalidation
    assert await cache.replace("user:7", first, b"old", 60) is False  # a fill that saw the older one


async def test_event_without_the_field_fails_the_message() -> None:
    step = build_for_message(
        CacheInvalidateConfig(keys=Templates(("user:{id}",))), SubscriptionContext(_app(MemoryCache()), "s")
    )

    with pytest.raises(KeyError):
        await step(Event.create("user.updated", {"email": "a@example.com"}, "req-1"), nothing_else)


async def test_cache_down_defers_the_invalidation_and_fails_the_message_so_it_waits() -> None:
    cache = DownCache()
    step = build_for_message(
        CacheInvalidateConfig(keys=Templates(("user:{id}",))), SubscriptionContext(_app(cache), "s")
    )

    with pytest.raises(CacheUnavailable, match="deferred"):
        await step(Event.create("user.deleted", {"id": 7}, "req-1"), nothing_else)
    assert cache.deferred == ["user:7"]


async def test_keys_this_process_tombstoned_after_the_events_write_are_skipped() -> None:
    cache = MemoryCache()
    made = MadeInvalidations()
    config = CacheInvalidateConfig(keys=Templates(("user:{id}", "profile:{id}")))
    step = build_for_message(config, SubscriptionContext(_app(cache, made), "s"))
    event = Event.create("user.updated", {"id": 7}, "req-1")
    made.record(event.id, ["user:7"])  # what the PATCH's own cache-invalidate step stored

    await step(event, nothing_else)
    assert await cache.get("user:7") is None  # left as the pipeline wrote it (here: nothing)
    assert is_tombstone(await cache.get("profile:7"))

    await step(Event.create("user.updated", {"id": 7}, "req-2"), nothing_else)  # another write's event
    assert is_tombstone(await cache.get("user:7"))


def _app(cache: MemoryCache | DownCache, made: MadeInvalidations | None = None) -> web.Application:
    app = web.Application()
    app[cache_backend_key] = cache
    app[made_invalidations_key] = made if made is not None else MadeInvalidations()
    return app
