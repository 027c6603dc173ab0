"""What this process put in the shared (Redis) outbox, kept until it is known delivered.

The Redis outbox is as durable as Redis: a node that restarts without AOF, a failover that
lost its last writes or a restore from an older snapshot takes the events waiting in it along,
and nothing said so but a log line. So each process remembers the events it appended (their
exact stored text), numbered, and counts its own appends in a key of its own
(`{key}:writer:{random}`), incremented in the append's own script: Redis holds exactly the
events numbered up to that count. A count lower than this process's own (none at all: a Redis
back empty) means every event numbered above it was lost with Redis's data, and the process
puts those back (`restore`): none is lost, and only the lost ones are sent again. A count of
its own, not one shared by every process: the others' appends after a loss would raise a
shared count past what this one saw and hide the loss.

An event is forgotten once this process removed it itself (the broker confirmed it) or saw the
outbox empty with its count intact (another process delivered it). The count is read with the
outbox's depth, which the publisher reads every few seconds (`idle_check_s`) and after each
store and drain, and only while this process remembers anything: otherwise the depth is a
plain `LLEN`.

Put-back events go behind those appended since the loss: consumers that keep a user's latest
state compare `data.updated_at` (README). What it cannot cover: a process that dies with
Redis's loss (its memory goes with it), and more than `JOURNAL_LIMIT` events of one process
waiting at once (the oldest are forgotten, with a WARNING).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection
from typing import Any, Final, Protocol, final

import attrs
import coredis
from prometheus_client import Counter

from app.clients.redis import RedisUnavailable, redis_errors

log = logging.getLogger("turnstile.outbox")

# Events remembered per process: a broker outage's worth at a few hundred events a second
# for half a minute, a few MiB.
JOURNAL_LIMIT: Final = 10_000
RESTORE_BATCH: Final = 100
# A writer key outlives its process by this long (refreshed by every append): long enough for
# any outage; one that expires while its process still remembers events makes it put them
# back (sent twice), never lose them.
WRITER_TTL_S: Final = 7 * 24 * 3600

EVENTS_RESTORED = Counter(
    "turnstile_outbox_events_restored_total",
    "Events put back in the Redis outbox by the process that had outboxed them, after Redis came back "
    "without them (empty or older)",
)

# KEYS: the list, the writer's count. ARGV[1]: the count's time to live; ARGV[2..]: the
# entries. Returns the count after the append: the last entry's number.
_APPEND: Final = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
local count = redis.call('INCRBY', KEYS[2], #ARGV - 1)
redis.call('EXPIRE', KEYS[2], ARGV[1])
return count
"""
# KEYS: the list, the writer's count. Returns the list's length and the count (0: none).
_STATE: Final = """
return {redis.call('LLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


class RedisClientSource(Protocol):
    """What the Redis outbox needs from `app.clients.redis.RedisConnection`: a live client."""

    @property
    def client(self) -> coredis.Redis[str]: ...


def _numbers(count: int, pushed: int) -> range:
    """The numbers of the last `pushed` entries, when the writer's count is `count` after them."""
    return range(count - pushed + 1, count + 1)


def companion_key(key: str, name: str) -> str:
    """A key in `key`'s Redis Cluster slot (the scripts touch them together)."""
    return f"{key}:{name}" if "{" in key else f"{{{key}}}:{name}"


@attrs.define
class _Entry:
    text: str
    number: int | None  # its place in this process's count; None: not in Redis, to put back


@final
class OutboxJournal:
    """The appends of this process to one Redis outbox list, and its memory of them.

    Args:
        connection: anything with a `.client` (a `coredis.Redis` with decode_responses=True).
        key: the outbox list's key.
    """

    def __init__(self, connection: RedisClientSource, key: str) -> None:
        self._connection = connection
        self._keys = [key, companion_key(key, f"writer:{uuid.uuid4().hex}")]
        self._entries: dict[str, _Entry] = {}  # by event id, oldest first
        self._count = 0  # what the writer key holds, as far as this process knows
        self._overflowing = False
        # Appends and checks one at a time: a count is compared with all the appends before it.
        self._lock = asyncio.Lock()

    async def append(self, entries: list[tuple[str, str]]) -> None:
        """RPUSH the (event id, text) entries, remembered once Redis holds them."""
        async with self._lock:
            count = await self._push([text for _, text in entries])
            self._lost_above(count - len(entries))  # the count before this append
            for number, (event_id, text) in zip(_numbers(count, len(entries)), entries, strict=True):
                self._remember(event_id, _Entry(text, number))
            self._count = count
            try:
                await self._restore()
            except RedisUnavailable as exc:  # these are stored; the rest waits for the next check
                log.warning("putting lost events back in the Redis outbox failed (%s): tried again at the next "
                            "check", exc)

    def forget(self, event_ids: Collection[str]) -> None:
        """This process removed them from the outbox (the broker confirmed them)."""
        for event_id in event_ids:
            self._entries.pop(event_id, None)

    async def depth(self) -> int:
        """The list's length, after putting back what Redis lost of this process's events."""
        client: Any = self._connection.client
        if not self._entries:  # nothing to put back: the plain read (the publisher's, per batch)
            with redis_errors():
                return int(await client.llen(self._keys[0]))
        async with self._lock:
            with redis_errors():
                length, count = await client.eval(_STATE, keys=self._keys, args=[])
            self._lost_above(int(count))
            if await self._restore():
                with redis_errors():
                    return int(await client.llen(self._keys[0]))
            if int(length) == 0:  # delivered, by this process or another, since they were appended
                self._entries.clear()
            return int(length)

    def _lost_above(self, count: int) -> None:
        """Redis's count is `count`: the entries numbered above it went with its data."""
        if count >= self._count:
            return
        lost = 0
        for entry in self._entries.values():
            if entry.number is not None and entry.number > count:
                entry.number = None
                lost += 1
        self._count = count
        if lost:
            log.error("Redis came back without the latest entries of the event outbox (restarted empty, or "
                      "older): %d events this process outboxed are put back", lost)

    async def _restore(self) -> bool:
        """Put back the entries not in Redis, oldest first; whether there were any. Raises
        RedisUnavailable, with what was not put back left for the next check."""
        waiting = [(event_id, entry) for event_id, entry in self._entries.items() if entry.number is None]
        for start in range(0, len(waiting), RESTORE_BATCH):
            batch = waiting[start:start + RESTORE_BATCH]
            count = await self._push([entry.text for _, entry in batch])
            for number, (_, entry) in zip(_numbers(count, len(batch)), batch, strict=True):
                entry.number = number
            self._count = count
            EVENTS_RESTORED.inc(len(batch))
        return bool(waiting)

    async def _push(self, texts: list[str]) -> int:
        client: Any = self._connection.client
        with redis_errors():
            return int(await client.eval(_APPEND, keys=self._keys, args=[WRITER_TTL_S, *texts]))

    def _remember(self, event_id: str, entry: _Entry) -> None:
        self._entries[event_id] = entry
        if len(self._entries) <= JOURNAL_LIMIT:
            self._overflowing = False
            return
        del self._entries[next(iter(self._entries))]
        if not self._overflowing:
            self._overflowing = True
            log.warning("more than %d events of this process wait in the Redis outbox: the oldest are no longer "
                        "remembered, and would not be put back if Redis lost them", JOURNAL_LIMIT)
