"""`PendingWrites`: writes that could not reach Redis, made as soon as it answers again.

A cache invalidation or a revocation that fails because Redis is down must not be lost: the
stale entry or the missing cut-off would be read again once Redis is back. The writer keeps
such a write here (`defer`), keyed by the Redis key it writes; a later write to the same key
replaces the earlier one (each is idempotent and the latest is the one that must hold). After
every health check (app/clients/redis/health.py) the list is replayed in order; a write that
fails again stays. Until a key's write is made, readers of that key go around Redis
(`holds`): the cache answers from upstream, so nothing stale is served meanwhile.

The list lives in this process. Another instance's pending writes are not here; every
instance hears every event that says a key changed (an `each-instance` subscription) and
keeps its own.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, final

from app.clients.redis.errors import RedisUnavailable

log = logging.getLogger("turnstile.redis")

DEFAULT_MAX_ENTRIES: Final = 100_000

Replay = Callable[[], Awaitable[None]]


@final
class PendingWrites:
    """Deferred writes by Redis key, oldest first, at most `max_entries` (the oldest go first)."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._writes: OrderedDict[str, tuple[str, Replay]] = OrderedDict()
        self._max_entries = max_entries
        self._overflowed = False
        self._announced = False  # a deferral was logged at WARNING since the list was last empty

    def __len__(self) -> int:
        return len(self._writes)

    def holds(self, key: str) -> bool:
        """Whether a write to `key` is still waiting for Redis."""
        return key in self._writes

    def defer(self, key: str, what: str, replay: Replay) -> None:
        """Keep `replay` (which writes `key`, described as `what`) until Redis takes it."""
        self._writes.pop(key, None)
        self._writes[key] = (what, replay)
        # One WARNING per outage, not one per write (a subscription retrying its events while
        # Redis is down defers the same write again and again); the others are DEBUG lines.
        level = logging.DEBUG if self._announced else logging.WARNING
        self._announced = True
        log.log(level, "Redis unreachable: %s deferred until it answers (the key is not read from Redis "
                "meanwhile; later deferrals are logged at DEBUG until they are made)", what)
        if len(self._writes) > self._max_entries:
            dropped, (dropped_what, _) = self._writes.popitem(last=False)
            if not self._overflowed:
                self._overflowed = True
                log.error("more than %d Redis writes waiting; dropping the oldest (%s on %s) and others after it",
                          self._max_entries, dropped_what, dropped)

    async def replay(self) -> int:
        """Make every waiting write that Redis takes now, in order; how many were made."""
        done = 0
        for key, (what, replay) in list(self._writes.items()):
            if self._writes.get(key, (None, None))[1] is not replay:
                continue  # replaced while we were replaying others
            try:
                await replay()
            except RedisUnavailable:
                continue  # still unreachable (a cluster's dead master): the next round tries again
            except Exception:  # a write Redis refuses for good must not block the others
                log.exception("a deferred Redis write failed and is dropped: %s", what)
            if self._writes.get(key, (None, None))[1] is replay:
                del self._writes[key]
            done += 1
        if done:
            log.info("made %d Redis write(s) deferred during the outage; %d still waiting", done, len(self._writes))
        if not self._writes:
            self._overflowed = False
            self._announced = False
        return done
