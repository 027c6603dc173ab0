"""Cache backends: `RedisCache` on the shared Redis connection, `MemoryCache` when there is none.

Both store bytes under a key with a TTL and share one contract, `CacheBackend`: a miss is
``None``; a backend that cannot answer now raises `CacheUnavailable`, and the caller (the
cache step) serves from upstream instead. Metrics are the step's business, not the backend's.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Literal, Protocol, final

from coredis import PureToken
from coredis.commands.script import Script

from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors

_MIN_REDIS_TTL_MS: Final = 1
# Compare-and-set in one round trip: store ARGV[2] for ARGV[3] ms only if the key holds ARGV[1].
_REPLACE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class CacheUnavailable(Exception):
    """The backend cannot answer now; the caller bypasses the cache."""


class CacheBackend(Protocol):
    """A TTL key-value store of bytes. ``name`` is ``"redis"`` or ``"memory"``."""

    name: str

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None on a miss. Raises CacheUnavailable."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value` for `ttl_s` seconds (> 0), replacing any value. Raises CacheUnavailable."""
        ...

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store `value` for `ttl_s` seconds (> 0) only if `key` holds nothing; True if stored.

        Atomic: of two adds racing on one key, one stores. Raises CacheUnavailable.
        """
        ...

    async def replace(self, key: str, expected: bytes, value: bytes, ttl_s: float) -> bool:
        """Store `value` for `ttl_s` seconds (> 0) only if `key` holds exactly `expected`; True if stored.

        Atomic (compare-and-set): a key that expired or changed meanwhile is left alone.
        Raises CacheUnavailable.
        """
        ...

    async def delete(self, *keys: str) -> None:
        """Drop the keys; missing ones are fine. Raises CacheUnavailable."""
        ...

    async def set_or_defer(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store like `set`, or, when the backend cannot answer now, keep the write and make it
        as soon as it can, reading `key` as unavailable until then. True when stored now.

        For writes that must not be lost to an outage (an invalidation). Never raises
        CacheUnavailable.
        """
        ...


def _check_ttl(ttl_s: float) -> None:
    if not (ttl_s > 0 and math.isfinite(ttl_s)):
        msg = f"cache TTL must be a positive number of seconds, got {ttl_s!r}"
        raise ValueError(msg)


@final
class RedisCache:
    """Cache entries as Redis strings under ``prefix + key``, expiring with ``PX``.

    The shared client decodes replies to ``str`` (what token state, rate limits and the outbox
    want). Cache values are bytes, so reads switch decoding off for that one command with
    coredis's `decoding(False)`: it is a context variable, so it affects only this task's
    command, needs no second connection pool, and returns the exact bytes stored (orjson output
    or not). Writes send bytes as they are.
    """

    name = "redis"

    def __init__(self, connection: RedisConnection, *, prefix: str = "") -> None:
        self._connection = connection
        self._prefix = prefix
        # Registered once: it runs by EVALSHA and is loaded again only if the server lost it.
        self._replace_script: Script[str] = Script(script=_REPLACE_SCRIPT)

    async def get(self, key: str) -> bytes | None:
        full = self._prefix + key
        if self._connection.pending.holds(full):
            # A write to it waits for Redis (see set_or_defer): what Redis holds may be stale.
            msg = f"a write to {key!r} waits for Redis"
            raise CacheUnavailable(msg)
        try:
            with redis_errors():
                value: bytes | None = await self._connection.get(full, decode=False)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc
        return value

    async def set_or_defer(self, key: str, value: bytes, ttl_s: float) -> bool:
        try:
            await self.set(key, value, ttl_s)
        except CacheUnavailable:
            self._connection.pending.defer(
                self._prefix + key, f"cache write of {key!r}", lambda: self._replay_set(key, value, ttl_s)
            )
            return False
        return True

    async def _replay_set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self.set(key, value, ttl_s)
        except CacheUnavailable as exc:
            raise RedisUnavailable(str(exc)) from exc

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._set(key, value, ttl_s, only_if_absent=False)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        return await self._set(key, value, ttl_s, only_if_absent=True)

    async def _set(self, key: str, value: bytes, ttl_s: float, *, only_if_absent: bool) -> bool:
        _check_ttl(ttl_s)
        # PX keeps sub-second TTLs exact; rounding up keeps a tiny TTL from meaning "no expiry".
        ttl_ms = max(_MIN_REDIS_TTL_MS, math.ceil(ttl_s * 1000))
        condition: Literal[PureToken.NX] | None = PureToken.NX if only_if_absent else None
        try:
            with redis_errors():
                stored = await self._connection.client.set(self._prefix + key, value, px=ttl_ms, condition=condition)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc
        finally:
            self._connection.invalidate_local(self._prefix + key)
        return bool(stored)  # SET answers nil when NX refused it

    async def replace(self, key: str, expected: bytes, value: bytes, ttl_s: float) -> bool:
        _check_ttl(ttl_s)
        ttl_ms = max(_MIN_REDIS_TTL_MS, math.ceil(ttl_s * 1000))
        try:
            with redis_errors():
                # The client is read per call: it is only valid while the connection is started.
                reply: Any = await self._replace_script(
                    keys=[self._prefix + key], args=[expected, value, ttl_ms], client=self._connection.client
                )
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc
        finally:
            self._connection.invalidate_local(self._prefix + key)
        return int(reply) == 1

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        full = [self._prefix + key for key in keys]
        try:
            with redis_errors():
                await self._connection.client.delete(full)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc
        finally:
            self._connection.invalidate_local(*full)


@final
class MemoryCache:
    """An in-process LRU of at most `max_entries`, each with its own TTL; never unavailable.

    An expired entry is a miss and is dropped when it is read. Past the bound, the least
    recently used entry goes first (expired ones are not swept eagerly; the bound holds anyway).
    """

    name = "memory"

    def __init__(self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, got {max_entries}"
            raise ValueError(msg)
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        _check_ttl(ttl_s)
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl_s)
        return True

    async def replace(self, key: str, expected: bytes, value: bytes, ttl_s: float) -> bool:
        _check_ttl(ttl_s)
        if await self.get(key) != expected:  # an expired entry reads as None
            return False
        await self.set(key, value, ttl_s)
        return True

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        _check_ttl(ttl_s)
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def set_or_defer(self, key: str, value: bytes, ttl_s: float) -> bool:
        await self.set(key, value, ttl_s)
        return True
