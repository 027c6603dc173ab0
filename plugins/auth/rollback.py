"""Noticing a Redis that came back with older data, for the sessions it would revive (contract §9a).

A node that restarts empty is covered by sessions failing closed: a family whose record is
gone is dead. A node that comes back with *older* data (a failover that lost its last writes,
a restore from a snapshot) is not: the records of sessions ended since come back alive, and
a cut-off cached as "none" comes back over a password change.

So every write that ends sessions (a family revoked, a cut-off raised) also increments
`{prefix}{rollback}:writes`, and each process remembers the highest value it has seen (its own
increments, and a read every `CHECK_EVERY_S`). A value lower than that is a rollback: what was
ended since is unknown, so every session is, as of now (`{prefix}{rollback}:everyone-revoked`,
a cut-off for every user), and users log in again: the price §9a allows. A restart with all its data
(AOF) changes nothing. Every process reads the shared cut-off with the counter, so one that
starts after the rollback knows it too.

Under Redis Cluster the counter lives on one master: a rollback of another master's slots
goes unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, final

from aiohttp import web
from prometheus_client import Counter

from app import RedisConnection, RedisUnavailable, redis_errors

CHECK_EVERY_S: Final = 1.0
# KEYS[1] the cut-off; ARGV[1] a cut-off, ARGV[2] its TTL: keeps the later of the two.
_RAISE: Final = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""

ROLLBACKS = Counter(
    "turnstile_auth_redis_rollbacks_total",
    "Times Redis was seen back with older data (its count of session-ending writes went down): every session ended",
)
log = logging.getLogger("turnstile.auth")


@final
class RollbackWatch:
    """The count of session-ending writes, and the cut-off a rollback set for everyone.

    Args:
        redis: the connection the token state lives on.
        ttl_s: how long a token can live: the everyone cut-off matters no longer.
    """

    def __init__(
        self, redis: RedisConnection, *, ttl_s: int, prefix: str = "turnstile:auth:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        # One hash tag: the two are read in one MGET, which Redis Cluster allows in one slot only.
        self._writes_key = f"{prefix}{{rollback}}:writes"
        self._everyone_key = f"{prefix}{{rollback}}:everyone-revoked"
        self._clock = clock
        self._highest = 0
        self.everyone_cutoff: float | None = None

    async def counted(self) -> None:
        """Count a write that ended sessions, once it is made. Raises RedisUnavailable."""
        with redis_errors():
            value = await self._redis.client.incr(self._writes_key)
        self._highest = max(self._highest, value)

    async def check(self) -> None:
        """Read the count and the shared cut-off; a count below the highest seen is a rollback.
        Raises RedisUnavailable."""
        # What was seen before the read: a count raised by a write made after the read was
        # sent could not be in what it returns, and must not pass for a rollback.
        expected = self._highest
        client: Any = self._redis.client
        with redis_errors():
            writes, everyone = await client.mget([self._writes_key, self._everyone_key])
        count = int(writes or 0)
        if count < expected and count < self._highest:  # not already handled by a check beside this one
            await self._rolled_back(count, expected)
        else:
            self._highest = max(self._highest, count)
        if everyone is not None:
            self.everyone_cutoff = max(self.everyone_cutoff or 0.0, float(everyone))

    async def warn_of_eviction(self) -> None:
        """Say so at start-up when Redis may evict keys that have no expiry: the count would
        go with them and read as a rollback (docs/deploy.md). A Redis that keeps its CONFIG to
        itself (a managed one) says nothing, and neither does this."""
        try:
            with redis_errors():
                config: Any = await self._redis.client.config_get(["maxmemory-policy"])
        except Exception:  # CONFIG refused, renamed, or Redis away: nothing to tell
            return
        policy = str(config.get("maxmemory-policy", "")) if isinstance(config, dict) else ""
        if policy.startswith("allkeys-"):
            log.warning("Redis's maxmemory-policy is %s: it may evict the event outbox and the count of "
                        "session-ending writes, which would end every session; use volatile-lru or noeviction",
                        policy)

    async def _rolled_back(self, count: int, expected: int) -> None:
        cutoff = self._clock()
        ROLLBACKS.inc()
        log.error("Redis came back with older data (its count of session-ending writes went from %d to %d: "
                  "a failover that lost writes, or a restore): every session is ended as of now, and "
                  "users log in again", expected, count)
        self.everyone_cutoff = max(self.everyone_cutoff or 0.0, cutoff)
        self._highest = count
        with redis_errors():
            await self._redis.client.eval(_RAISE, keys=[self._everyone_key], args=[repr(cutoff), self._ttl_s])


def watching(watch: RollbackWatch) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that checks `watch` every `CHECK_EVERY_S` while the app runs."""

    async def run(_app: web.Application) -> AsyncIterator[None]:
        await watch.warn_of_eviction()
        task = asyncio.create_task(_every_second(watch), name="redis rollback watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return run


async def _every_second(watch: RollbackWatch) -> None:
    while True:
        try:
            await watch.check()
        except RedisUnavailable:
            pass  # the outage is logged by the clients that need Redis; checked again when it answers
        except Exception:
            log.exception("the Redis rollback watch failed; it goes on")
        await asyncio.sleep(CHECK_EVERY_S)
