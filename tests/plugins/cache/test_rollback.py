"""Emptying the cache after a Redis rollback: every entry under the cache steps' prefixes goes,
nothing else does (on standalone Redis and, in the cluster pass, on every master)."""

from __future__ import annotations

from app.clients.redis import RedisConnection
from plugins.cache.rollback import CacheKeyHeads


async def test_every_entry_under_a_cache_prefix_is_deleted_and_nothing_else(
    redis_connection: RedisConnection, unique: str,
) -> None:
    client = redis_connection.client
    # A head with glob characters: matched as text, not as a pattern.
    heads = CacheKeyHeads()
    heads.add(f"turnstile:{unique}:user:{{id}}")
    heads.add(f"turnstile:{unique}:odd[*?]:{{id}}")
    heads.add("{id}:starts-with-a-placeholder")
    cached = [f"turnstile:{unique}:user:{n}" for n in range(1200)] + [f"turnstile:{unique}:odd[*?]:1"]
    kept = [f"turnstile:{unique}:users-list", f"turnstile:{unique}:oddX:1", f"turnstile:{unique}:auth:fam:1"]
    for key in cached + kept:
        await client.set(key, "v", ex=60)

    deleted = await heads.delete_all(redis_connection)

    assert deleted == len(cached)
    assert await client.exists(cached) == 0
    assert await client.exists(kept) == len(kept)
    assert heads.unprefixed == {"{id}:starts-with-a-placeholder"}
    await client.delete(kept)
