"""Noticing a Redis that came back with older data (contract §9a).

A node that restarts empty is covered by each user of Redis failing closed (a session whose
record is gone is dead, a missing cache entry is a miss). A node that comes back with *older*
data (a failover that lost its last writes, a restore from a snapshot) is not: the records of
sessions ended since come back alive, a cut-off cached as "none" comes back over a password
change, and a cache entry tombstoned by a write comes back with the record as it was before.

So every write whose loss would revive something (a family revoked, a cut-off raised, a cache
entry tombstoned) also increments `{prefix}{rollback}:writes` (`counted`), and each process
remembers the highest value it has seen: its own increments, and a read every `CHECK_EVERY_S`
(`check`). A value lower than that is a rollback. What was written since is unknown, so the
process that notices it records when (`rolled_back_at`, shared in
`{prefix}{rollback}:everyone-revoked`, read by every process with the count, so one started
after the rollback knows it too) and runs the `on_rollback` callbacks: the token checks refuse
every token issued before it (users log in again: the price §9a allows), the cache drops its
entries. A restart with all its data (AOF) changes nothing.

The keys keep the names the auth plugin gave them when it owned this watch, so processes of
both releases count on one counter during a rolling upgrade.

Under Redis Cluster the counter lives on one master: a rollback of another master's slots goes
unnoticed. Nor can a rollback be noticed by processes that all started after it: none of them
saw the higher count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, final

from prometheus_client import Counter

from app.clients.redis.errors import RedisUnavailable, redis_errors
from app.untraced import untraced

if TYPE_CHECKING:
    from app.clients.redis.connection import RedisConnection

CHECK_EVERY_S: Final = 1.0
DEFAULT_PREFIX: Final = "turnstile:auth:"
# KEYS[1] the rollback's time; ARGV[1] a time: keeps the later of the two. No expiry: one key,
# and a time long past refuses nothing (every token still alive was issued after it).
_RAISE: Final = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""

ROLLBACKS = Counter(
    "turnstile_auth_redis_rollbacks_total",
    "Times Redis was seen back with older data (its count of writes that end sessions or invalidate the "
    "cache went down): every session ended, the cache emptied",
)
log = logging.getLogger("turnstile.redis")

OnRollback = Callable[[float], Awaitable[None]]


@final
class RollbackWatch:
    """The count of writes whose loss matters, and when Redis was last seen rolled back.

    Args:
        redis: the connection whose server is watched.
        prefix: the keys' prefix.
        clock: the time a rollback is dated with (tokens compare their `iat` with it).
    """

    def __init__(
        self, redis: RedisConnection, *, prefix: str = DEFAULT_PREFIX, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        # One hash tag: the two are read in one MGET, which Redis Cluster allows in one slot only.
        self._writes_key = f"{prefix}{{rollback}}:writes"
        self._rolled_back_key = f"{prefix}{{rollback}}:everyone-revoked"
        self._clock = clock
        self._highest = 0
        self.rolled_back_at: float | None = None
        # Run by the process that notices a rollback, in order, after `rolled_back_at` is shared.
        self.on_rollback: list[OnRollback] = []
        self._cleanups: list[OnRollback] = []  # those of the last rollback still to run
        self._cleanup_at = 0.0
        self._cleaning = False

    async def counted(self) -> None:
        """Count a write whose loss matters, once it is made.

        Never raises: the write is made, and what asked for it must not fail because the count
        could not follow (under Redis Cluster the counter's master may be the one that is down
        while the write's own answered); a rollback that loses that write goes unnoticed.
        """
        try:
            with redis_errors():
                value = await self._redis.client.incr(self._writes_key)
        except RedisUnavailable as exc:
            log.debug("a session-ending or cache-invalidating write was not counted: %s", exc)
            return
        self._highest = max(self._highest, value)

    async def check(self) -> None:
        """Read the count and the last rollback's time; a count below the highest seen is a
        rollback. Raises RedisUnavailable."""
        # What was seen before the read: a count raised by a write made after the read was
        # sent could not be in what it returns, and must not pass for a rollback.
        expected = self._highest
        client: Any = self._redis.client
        with redis_errors():
            writes, rolled_back_at = await client.mget([self._writes_key, self._rolled_back_key])
        count = int(writes or 0)
        if count < expected and count < self._highest:  # not already handled by a check beside this one
            await self._rolled_back(count, expected)
        else:
            self._highest = max(self._highest, count)
        if rolled_back_at is not None:
            self.rolled_back_at = max(self.rolled_back_at or 0.0, float(rolled_back_at))
        await self._clean_up()

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
                        "writes that end sessions, which would end every session; use volatile-lru or noeviction",
                        policy)

    async def _rolled_back(self, count: int, expected: int) -> None:
        at = self._clock()
        ROLLBACKS.inc()
        log.error("Redis came back with older data (its count of session-ending and cache-invalidating writes "
                  "went from %d to %d: a failover that lost writes, or a restore): every session is ended as "
                  "of now, users log in again, and the cache is emptied; events that were waiting in its "
                  "outbox for the broker are put back by the processes that outboxed them", expected, count)
        self.rolled_back_at = max(self.rolled_back_at or 0.0, at)
        self._highest = count
        self._cleanups = [self._share, *self.on_rollback]
        self._cleanup_at = at
        await self._clean_up()

    async def _share(self, at: float) -> None:
        with redis_errors():
            await self._redis.client.eval(_RAISE, keys=[self._rolled_back_key], args=[repr(at)])

    async def _clean_up(self) -> None:
        """Run what is left of the last rollback's clean-ups; one that meets a Redis outage is
        run again, with those after it, at the next check. One at a time: checks run side by side."""
        if self._cleaning:
            return
        self._cleaning = True
        try:
            while self._cleanups:
                try:
                    await self._cleanups[0](self._cleanup_at)
                except RedisUnavailable:
                    log.warning("Redis stopped answering during the clean-up after its rollback: the rest "
                                "waits for it")
                    return
                except Exception:
                    log.exception("a clean-up after the Redis rollback failed; the others go on")
                self._cleanups.pop(0)
        finally:
            self._cleaning = False

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Checks every `CHECK_EVERY_S` for as long as the caller's context lasts."""
        await self.warn_of_eviction()
        task = asyncio.create_task(self._every_second(), name="redis rollback watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _every_second(self) -> None:
        with untraced():
            while True:
                try:
                    await self.check()
                except RedisUnavailable:
                    pass  # the outage is logged by the clients that need Redis; checked again when it answers
                except Exception:
                    log.exception("the Redis rollback watch failed; it goes on")
                await asyncio.sleep(CHECK_EVERY_S)
