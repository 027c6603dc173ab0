"""Window counters: one in Redis, shared by every process; one in memory, for one process.

The rate limits count with them, and so does the accounts plugin's budget of verification mails.

Both implement a *fixed window* that starts at a key's first hit: the first hit creates the
counter with the window as its lifetime, later hits only increment it, and the counter
disappears when the window ends. It costs one small key per (limiter, value) and gives an
exact Retry-After (the counter's remaining lifetime). Its known weakness, up to twice the
limit across a window boundary, does not matter for brute-force protection, where the limit
is small and the window starts at the attacker's own first attempt (not at a clock
boundary he could aim for). A sliding log (a sorted set of timestamps) would be exact but
stores one member per attempt.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol, final

from coredis.commands.script import Script

from app.clients.redis import RedisConnection, redis_errors

# INCR and the expiry in one script, so the counter can never be left without an expiry
# (a crash between INCR and EXPIRE would lock a key out forever). A key found without a
# TTL (written by something else) gets one too.
_HIT_SCRIPT: Final = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
# Give back one hit, never below zero and never creating a key (the window may have ended).
_REFUND_SCRIPT: Final = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class WindowCounter(Protocol):
    """Counts hits on a key within a window."""

    name: str

    async def hit(self, key: str, window_ms: int) -> tuple[int, int]:
        """Count one hit; return the hits in the current window and the ms until it ends.

        Raises:
            RedisUnavailable: the shared counter cannot be reached (Redis only).
        """
        ...

    async def refund(self, key: str) -> None:
        """Take back one hit of the current window (a no-op when the window has ended)."""
        ...


@final
class RedisWindowCounter:
    """Counters in Redis, so every process and replica shares one limit."""

    name = "redis"

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._script: Script[str] = Script(script=_HIT_SCRIPT)
        self._refund: Script[str] = Script(script=_REFUND_SCRIPT)

    async def hit(self, key: str, window_ms: int) -> tuple[int, int]:
        with redis_errors():
            # The client is read per call: it is only valid while the connection is started.
            reply: Any = await self._script(keys=[key], args=[window_ms], client=self._connection.client)
        count, ttl_ms = reply
        return int(count), int(ttl_ms)

    async def refund(self, key: str) -> None:
        with redis_errors():
            await self._refund(keys=[key], args=[], client=self._connection.client)


@final
class MemoryWindowCounter:
    """Counters in this process: at most `max_keys`, the least recently hit dropped first.

    Dropping a key forgets its count (its next hit starts a new window), so the bound trades
    exactness under a flood of distinct keys for memory that cannot grow without limit.
    """

    name = "memory"

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            msg = f"max_keys must be at least 1, got {max_keys}"
            raise ValueError(msg)
        self._max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (count, ends_at)

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, key: str, window_ms: int) -> tuple[int, int]:
        now = self._clock()
        count, ends_at = self._windows.pop(key, (0, 0.0))
        if ends_at <= now:
            count, ends_at = 0, now + window_ms / 1000
        count += 1
        self._windows[key] = (count, ends_at)
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
        return count, max(0, round((ends_at - now) * 1000))

    async def refund(self, key: str) -> None:
        entry = self._windows.get(key)
        if entry is not None and entry[0] > 0 and entry[1] > self._clock():
            self._windows[key] = (entry[0] - 1, entry[1])
