"""Per-user revocation cut-offs (contract §7, §9a): every token of a user issued at or before
the newest cut-off anyone knows is dead.

Where a cut-off lives, most durable first:

- the data service record (`sessions_revoked_at`, `RecordRevocations`): it survives the loss
  of every Redis key. A record that is gone (a deleted user) or inactive means "every token
  until now" too;
- Redis (`RedisRevocations`), shared by every instance: a cache of the record, holding a
  cut-off or "none" (the record has none, so the next check does not ask again). A missing key
  (never read, expired, or lost with a node that restarted empty) is read again from the
  record, so losing Redis data never revives a token;
- this process (`LocalRevocations`): every cut-off it made, heard of (an event) or read. It is
  a minimum, not only a fallback: the check takes the newest of it and the shared one.

A revocation is written to all three: this process at once (it holds whatever else fails),
Redis (deferred until it answers when it is down, app/clients/redis/pending.py) and the record.
While Redis is down the check asks the record instead, keeping what it read for a second.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, final

from coredis import PureToken

from app import (
    DataService,
    NotFound,
    ProblemError,
    RedisConnection,
    RedisUnavailable,
    RollbackWatch,
    SingleFlight,
    current_request_id,
    redis_errors,
)

NONE: Final = "none"  # Redis: the record has no cut-off
MISSING: Final = object()  # Redis: no key (read the record)
# While Redis is down, how long a read of the record stands for it: a revocation made by another
# instance (which reaches every instance through Redis, or its event) is seen within this even
# when the broker is down too. One data-service read per user and second, single-flighted.
RECORD_READ_TTL_S: Final = 1.0
# Without Redis (embedded defaults: one process, so no other instance revokes anything), what
# stands for the record is only what another producer changed in the data service itself.
EMBEDDED_RECORD_READ_TTL_S: Final = 30.0
MAX_LOCAL_ENTRIES: Final = 100_000

# KEYS[1] the user's key; ARGV[1] a cut-off, ARGV[2] its TTL. Keeps the later cut-off: a late
# or repeated revocation never moves it back, and it replaces "none".
_RAISE: Final = """
local current = redis.call('GET', KEYS[1])
if current and current ~= 'none' and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def newest(*cutoffs: float | None) -> float | None:
    known = [cutoff for cutoff in cutoffs if cutoff is not None]
    return max(known) if known else None


@final
class LocalRevocations:
    """This process's record: the cut-offs it made, heard of or read, each kept `ttl_s` (as long
    as a token can live), and short-lived copies of what the record said (`record_read_ttl_s`)."""

    def __init__(
        self, *, ttl_s: float, record_read_ttl_s: float = RECORD_READ_TTL_S,
        max_entries: int = MAX_LOCAL_ENTRIES, clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl_s = ttl_s
        self._read_ttl_s = record_read_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cutoffs: OrderedDict[int, tuple[float, float]] = OrderedDict()  # user -> (cut-off, expires)
        self._reads: OrderedDict[int, tuple[float | None, float]] = OrderedDict()

    def remember(self, user_id: int, cutoff: float) -> None:
        """Record a cut-off (the later one wins)."""
        previous = self.cutoff(user_id)
        if previous is None or previous < cutoff:
            self._put(self._cutoffs, user_id, (cutoff, self._clock() + self._ttl_s))

    def cutoff(self, user_id: int) -> float | None:
        entry = self._cutoffs.get(user_id)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._cutoffs[user_id]
            return None
        return entry[0]

    def remember_read(self, user_id: int, cutoff: float | None) -> None:
        """What the record said just now (None: no cut-off)."""
        self._put(self._reads, user_id, (cutoff, self._clock()))

    def read(self, user_id: int) -> tuple[bool, float | None]:
        """(whether a recent read is known, its cut-off)."""
        entry = self._reads.get(user_id)
        if entry is None or self._clock() - entry[1] >= self._read_ttl_s:
            return False, None
        return True, entry[0]

    def last_read(self, user_id: int) -> tuple[bool, float | None]:
        """(whether any read is known, however old, up to `ttl_s`; its cut-off): what stands in
        when the record cannot be read again (stale-if-error)."""
        entry = self._reads.get(user_id)
        if entry is None or self._clock() - entry[1] >= self._ttl_s:
            self._reads.pop(user_id, None)
            return False, None
        return True, entry[0]

    def _put(self, entries: OrderedDict[int, Any], user_id: int, value: Any) -> None:
        entries[user_id] = value
        entries.move_to_end(user_id)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)


def to_rfc3339(cutoff: float) -> str:
    """`cutoff` as the record keeps it, rounded up to the microsecond so it never moves back."""
    micros = math.ceil(cutoff * 1_000_000)
    moment = _at(micros)
    # `cutoff * 1e6` is itself rounded (a float's step there is ~0.25 µs): one more microsecond
    # when the product fell below the true value and the ceiling with it.
    if moment.timestamp() < cutoff:
        moment = _at(micros + 1)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _at(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


@final
class RecordRevocations:
    """The durable cut-off: the data service record's `sessions_revoked_at`."""

    def __init__(self, data: DataService, *, clock: Callable[[], float] = time.time) -> None:
        self._data = data
        self._clock = clock

    async def read(self, user_id: int) -> float | None:
        """The record's cut-off; now for a user who is gone or inactive. Raises the data
        service's ProblemErrors (503, 504, 502) when it cannot answer."""
        try:
            reply = await self._data.request("GET", f"/api/v1/users/{user_id}")
        except NotFound:
            return self._clock()
        return self.cutoff_of(reply.data)

    def cutoff_of(self, record: object) -> float | None:
        """The cut-off a user record (as the data service answers it) stands for."""
        if not isinstance(record, dict) or record.get("is_active") is not True:
            return self._clock()
        value = record.get("sessions_revoked_at")
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return self._clock()  # unreadable: the safe side

    async def write(self, user_id: int, cutoff: float) -> None:
        """Record `cutoff`; a user who is gone needs none. Raises the data service's ProblemErrors."""
        request_id = current_request_id.get()  # the request that ended the sessions, if any
        try:
            await self._data.request(
                "PATCH", f"/api/v1/users/{user_id}", json={"sessions_revoked_at": to_rfc3339(cutoff)},
                request_id=None if request_id == "-" else request_id,
            )
        except NotFound:
            return


@final
class RedisRevocations:
    """The shared cache of cut-offs: ``{prefix}revoked:{user_id}`` holds a cut-off or "none",
    for `ttl_s` (as long as a token can live). Its reads go through the local mirror."""

    def __init__(
        self, redis: RedisConnection, *, ttl_s: int, prefix: str = "turnstile:auth:",
        watch: RollbackWatch | None = None,
    ) -> None:
        self.redis = redis
        self._ttl_s = ttl_s
        self._prefix = prefix
        self.watch = watch  # counts each cut-off written, so a Redis that loses it is noticed

    def key(self, user_id: int) -> str:
        return f"{self._prefix}revoked:{user_id}"

    async def get(self, user_id: int) -> float | object | None:
        """The cut-off, None ("none"), or `MISSING`. Raises RedisUnavailable."""
        with redis_errors():
            value = await self.redis.get(self.key(user_id))
        if value is None:
            return MISSING
        return None if value == NONE else float(value)

    async def raise_to(self, user_id: int, cutoff: float) -> None:
        """Make the cut-off at least `cutoff`. Raises RedisUnavailable."""
        key = self.key(user_id)
        try:
            with redis_errors():
                await self.redis.client.eval(_RAISE, keys=[key], args=[repr(cutoff), self._ttl_s])
        finally:
            self.redis.invalidate_local(key)
        if self.watch is not None:
            await self.watch.counted()

    async def fill(self, user_id: int, cutoff: float | None) -> None:
        """Keep what the record said, unless a revocation was written meanwhile. Raises RedisUnavailable."""
        key = self.key(user_id)
        try:
            with redis_errors():
                await self.redis.client.set(
                    key, NONE if cutoff is None else repr(cutoff), ex=self._ttl_s, condition=PureToken.NX
                )
        finally:
            self.redis.invalidate_local(key)


class Revocations:
    """Revoke a user's tokens, and tell the cut-off a token is checked against (see the module).

    Args:
        local: this process's record.
        record: the data service's (None: none kept, e.g. in unit tests).
        redis: the shared cache (None: embedded, one process).
        on_fallback: called with the error when Redis is down and the record is asked instead.
    """

    def __init__(
        self, local: LocalRevocations, record: RecordRevocations | None, redis: RedisRevocations | None, *,
        on_fallback: Callable[[BaseException], None] = lambda _exc: None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.local = local
        self.record = record
        self.redis = redis
        self._on_fallback = on_fallback
        self._clock = clock
        self._reads: SingleFlight[int, float | None] = SingleFlight()

    async def revoke(self, user_id: int, at: float | None = None, *, durable: bool = True) -> bool:
        """Every token of `user_id` issued at or before `at` (default: now) is dead.

        This process knows at once; Redis gets it now or, when it is down, as soon as it
        answers; with `durable`, the record gets it too (raising the data service's
        ProblemErrors when it cannot take it). True when Redis took it now.
        """
        cutoff = self._clock() if at is None else at
        self.local.remember(user_id, cutoff)
        shared = await self._share(user_id, cutoff)
        if durable and self.record is not None:
            await self.record.write(user_id, cutoff)
        return shared

    async def seen(self, user_id: int, record: dict[str, Any]) -> None:
        """A user record just read (by a login or a refresh) stands in for a read of its cut-off:
        cached like one, so the check that follows does not ask the data service again."""
        if self.record is None:
            return
        cutoff = self.record.cutoff_of(record)
        self.local.remember_read(user_id, cutoff)
        if self.redis is not None:
            with contextlib.suppress(RedisUnavailable):
                await self.redis.fill(user_id, cutoff)  # only where no cut-off is cached yet

    async def cutoff(self, user_id: int) -> float | None:
        """The newest cut-off of `user_id` that this process, Redis or the record knows.

        Raises the data service's ProblemErrors when only the record can tell and it cannot answer.
        """
        everyone = None if self.redis is None or self.redis.watch is None else self.redis.watch.rolled_back_at
        return newest(self.local.cutoff(user_id), await self._shared(user_id), everyone)

    async def _share(self, user_id: int, cutoff: float) -> bool:
        redis = self.redis
        if redis is None:
            return True
        try:
            await redis.raise_to(user_id, cutoff)
        except RedisUnavailable:
            async def replay() -> None:
                await redis.raise_to(user_id, self.local.cutoff(user_id) or cutoff)

            redis.redis.pending.defer(redis.key(user_id), f"revocation of user {user_id}", replay)
            return False
        return True

    async def _shared(self, user_id: int) -> float | None:
        redis = self.redis
        if redis is None:
            return await self._from_record(user_id)
        try:
            value = await redis.get(user_id)
        except RedisUnavailable as exc:
            self._on_fallback(exc)
            return await self._from_record(user_id)
        if value is not MISSING:
            return value  # type: ignore[return-value]  # a cut-off or None, see RedisRevocations.get
        cutoff = await self._read_record(user_id)
        with contextlib.suppress(RedisUnavailable):  # then the next check reads the record again
            await redis.fill(user_id, cutoff)
        return cutoff

    async def _from_record(self, user_id: int) -> float | None:
        known, cutoff = self.local.read(user_id)
        if known:
            return cutoff
        try:
            cutoff = await self._read_record(user_id)
        except ProblemError:
            # The data service does not answer either: the last read stands (with this process's
            # own revocations, which `cutoff` adds), rather than every request failing with it.
            known, cutoff = self.local.last_read(user_id)
            if known:
                return cutoff
            raise
        self.local.remember_read(user_id, cutoff)
        return cutoff

    async def _read_record(self, user_id: int) -> float | None:
        record = self.record
        if record is None:
            return None
        return await self._reads.do(user_id, lambda: record.read(user_id))
