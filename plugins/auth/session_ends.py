"""Sessions other instances end, known here before Redis goes away.

While Redis is down the access check answers from this process's record of ended sessions
(`MirroredTokenStore`). That record held only the ends this process made itself, so a session
logged out on another instance a minute before the outage was alive again here for the rest of
its access tokens' lifetime (contract §4, §9a: a revoked token is refused by every instance).

Redis already tells every instance when a session's key changes: the local mirror's tracking
connection receives an invalidation push for every write under the family prefix, by any
client (`LocalMirror.watch`). A push does not say what changed (a login, a rotation, an end, an
expiry), so the keys it names are read again, in batches, and a family whose key is gone is
recorded as ended for as long as its access tokens can live. What this cannot know: an end
pushed while the tracking connection was down, or read back only after Redis went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Final, final

from app import RedisConnection, RedisUnavailable, redis_errors
from plugins.auth.store import MemoryTokenStore

log = logging.getLogger("turnstile.auth")

READ_BATCH: Final = 100
# Keys waiting to be read again: past it the oldest are dropped (a burst of logins far beyond
# what Redis answers; their ends, if any, stay unknown here until read by a request).
MAX_WAITING: Final = 10_000


@final
class SessionEnds:
    """Reads again the family keys Redis says changed, and records the ones that are gone.

    Args:
        redis: the connection whose mirror hears the pushes and whose client reads the keys.
        prefix: the family keys' prefix (`{KEY_PREFIX}fam:`).
        record: where ended families go (the Redis-down fallback reads it).
        remember_s: how long an end is kept: the access tokens' lifetime.
    """

    def __init__(self, redis: RedisConnection, prefix: str, record: MemoryTokenStore, *, remember_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._record = record
        self._remember_s = remember_s
        self._waiting: dict[str, None] = {}  # keys to read again, oldest first
        self._wake = asyncio.Event()

    def changed(self, keys: list[str]) -> None:
        """The mirror's watcher: `keys` changed in Redis (called on the event loop)."""
        for key in keys:
            self._waiting.pop(key, None)
            self._waiting[key] = None
        while len(self._waiting) > MAX_WAITING:
            del self._waiting[next(iter(self._waiting))]
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Watches the pushes for as long as the caller's context lasts (none without a mirror:
        a Redis Cluster, or tracking turned off)."""
        mirror = self._redis.mirror
        if mirror is None:
            yield
            return
        mirror.watch(self._prefix, self.changed)
        task = asyncio.create_task(self._read_again(), name="session ends")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read_again(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch = list(self._waiting)[:READ_BATCH]
                for key in batch:
                    del self._waiting[key]
                try:
                    await self._read(batch)
                except RedisUnavailable as exc:  # Redis's outage is logged by its health check
                    log.debug("could not read %d changed sessions again: %s", len(batch), exc)
                except Exception:
                    log.exception("reading changed sessions again failed; it goes on")

    async def _read(self, keys: list[str]) -> None:
        client: Any = self._redis.client
        with redis_errors():
            values = await client.mget(keys)
        for key, value in zip(keys, values, strict=True):
            if value is None:
                self._record.remember_ended(key[len(self._prefix):], for_s=self._remember_s)
