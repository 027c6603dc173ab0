"""Emptying the cache after Redis came back with older data (contract §9a).

A rollback (a failover that lost writes, a restore from a snapshot) brings back cache entries
that writes made since had tombstoned: each would be served, stale, until its TTL ran out. The
core's `RollbackWatch` notices a rollback by a count of the writes whose loss matters, which
counts every tombstone the `cache-invalidate` step stores; the process that notices it deletes
every entry under the key prefixes of the app's `cache` steps, and reads fetch again.

A `cache` key that starts with a placeholder (``{id}:user``) names no prefix to delete by: its
entries stay until they expire, and the log says so.
"""

from __future__ import annotations

import logging
from typing import Any, Final, final

from aiohttp import web

from app import RedisConnection, redis_errors

# Keys deleted per UNLINK: large enough to be quick, small enough not to hold Redis up.
BATCH: Final = 500
log = logging.getLogger("turnstile.cache")


def _glob_escaped(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


@final
class CacheKeyHeads:
    """The literal head of every `cache` step's key built in this app (reloads included)."""

    def __init__(self) -> None:
        self.prefixes: set[str] = set()
        self.unprefixed: set[str] = set()  # keys that start with a placeholder

    def add(self, full_key_template: str) -> None:
        head, placeholder, _ = full_key_template.partition("{")
        if placeholder and not head:
            self.unprefixed.add(full_key_template)
        else:
            self.prefixes.add(head)

    async def delete_all(self, redis: RedisConnection) -> int:
        """Delete every entry under the prefixes; how many. Raises RedisUnavailable."""
        client: Any = redis.client
        deleted = 0
        for prefix in sorted(self.prefixes):
            batch: list[str] = []
            with redis_errors():
                # Every master's keys on a cluster (coredis scans each), unlinked where they live.
                async for key in client.scan_iter(match=_glob_escaped(prefix) + "*", count=BATCH):
                    batch.append(key)
                    if len(batch) >= BATCH:
                        deleted += await self._unlink(redis, batch)
                        batch = []
                if batch:
                    deleted += await self._unlink(redis, batch)
        if self.unprefixed:
            log.warning("cache entries of %s start with a placeholder and could not be deleted after the Redis "
                        "rollback: they may be stale until they expire", ", ".join(sorted(self.unprefixed)))
        return deleted

    @staticmethod
    async def _unlink(redis: RedisConnection, keys: list[str]) -> int:
        try:
            return int(await redis.client.unlink(keys))
        finally:
            redis.invalidate_local(*keys)  # Redis pushes the same to every other process


cache_key_heads_key: Final[web.AppKey[CacheKeyHeads]] = web.AppKey("cache_key_heads")


def empty_on_rollback(redis: RedisConnection, heads: CacheKeyHeads) -> None:
    """Have the process that notices a Redis rollback delete every cache entry."""

    async def empty(_rolled_back_at: float) -> None:
        deleted = await heads.delete_all(redis)
        log.warning("after the Redis rollback, %d cache entries were deleted: reads fetch them again", deleted)

    redis.rollbacks.on_rollback.append(empty)
