"""What this process put in the shared (Redis) outbox, kept until it is known delivered.

The Redis outbox is as durable as Redis: a node that restarts without AOF, a failover that
lost its last writes or a restore from an older snapshot takes the events waiting in it along,
and nothing said so but a log line. So each process remembers the events it appended (their
exact stored text) and learns, from two companion keys written in the append's own script,
whether Redis still holds what it wrote:

- `{key}:epoch`, a random value set by the first append into an empty Redis: a Redis back
  empty answers none (or, once someone appended again, another one);
- `{key}:appends`, a count of appends: a Redis back older answers a lower count than one this
  process saw. The process that notices it draws a new epoch, so every other process notices
  too, whatever its own count.

Either way the process puts back every event it remembers (its `OutboxJournal.restore`):
some may have been delivered already and are sent twice (at-least-once; consumers dedupe by
`message_id`), none is lost. An event is forgotten once this process removed it itself
(confirmed by the broker) or saw the outbox empty with Redis unchanged after appending it
(another process delivered it). Redis's state is read with the outbox's depth, which the
publisher reads every few seconds (`idle_check_s`) and after each store and drain.

What it cannot cover: a process that dies with Redis's loss (its memory goes with it), and
more than `JOURNAL_LIMIT` events waiting at once (the oldest are forgotten, with a WARNING).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Collection
from typing import Any, Final, Protocol, final

import coredis
from prometheus_client import Counter

from app.clients.redis import redis_errors

log = logging.getLogger("turnstile.outbox")

# Events remembered per process: a broker outage's worth at a few hundred events a second
# for half a minute, a few MiB.
JOURNAL_LIMIT: Final = 10_000
RESTORE_BATCH: Final = 100

EVENTS_RESTORED = Counter(
    "turnstile_outbox_events_restored_total",
    "Events put back in the Redis outbox by the process that had outboxed them, after Redis came back "
    "without them (empty or older)",
)

# KEYS: the list, the epoch, the count. ARGV[1]: an epoch for an empty Redis; ARGV[2..]: the
# entries. Returns the epoch and the count after the append.
_APPEND: Final = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
return {epoch, redis.call('INCRBY', KEYS[3], #ARGV - 1)}
"""
# KEYS: the list, the epoch, the count. Returns the list's length, the epoch (false: none), the count.
_STATE: Final = """
return {redis.call('LLEN', KEYS[1]), redis.call('GET', KEYS[2]), tonumber(redis.call('GET', KEYS[3]) or '0')}
"""
# KEYS: the epoch. ARGV[1]: the epoch seen with a count gone down; ARGV[2]: a new one. A new
# epoch makes every process notice, whatever count it saw (only one is drawn per loss).
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
"""


class RedisClientSource(Protocol):
    """What the Redis outbox needs from `app.clients.redis.RedisConnection`: a live client."""

    @property
    def client(self) -> coredis.Redis[str]: ...


def companion_key(key: str, name: str) -> str:
    """A key in `key`'s Redis Cluster slot (the scripts touch them together)."""
    return f"{key}:{name}" if "{" in key else f"{{{key}}}:{name}"


@final
class OutboxJournal:
    """The appends to one Redis outbox list, and this process's memory of them.

    Args:
        connection: anything with a `.client` (a `coredis.Redis` with decode_responses=True).
        key: the outbox list's key.
    """

    def __init__(self, connection: RedisClientSource, key: str) -> None:
        self._connection = connection
        self._keys = [key, companion_key(key, "epoch"), companion_key(key, "appends")]
        self._remembered: dict[str, str] = {}  # event id -> the stored text, oldest first
        self._epoch: str | None = None
        self._highest = 0  # the highest count seen under `_epoch`
        self._overflowing = False
        self._restoring = asyncio.Lock()

    async def append(self, entries: list[tuple[str, str]]) -> None:
        """RPUSH the (event id, text) entries, remembered once Redis holds them."""
        epoch, count = await self._push([text for _, text in entries])
        lost = list(self._remembered.items()) if self._epoch is not None and epoch != self._epoch else []
        self._saw(epoch, count)
        for event_id, text in entries:
            self._remember(event_id, text)
        if lost:  # Redis lost what came before these: it goes behind them
            async with self._restoring:
                await self._restore(lost)

    def forget(self, event_ids: Collection[str]) -> None:
        """This process removed them from the outbox (the broker confirmed them)."""
        for event_id in event_ids:
            self._remembered.pop(event_id, None)

    async def depth(self) -> int:
        """The list's length, after putting back what Redis lost of this process's events."""
        client: Any = self._connection.client
        if not self._remembered:  # nothing to put back: the plain read (the publisher's, per batch)
            with redis_errors():
                return int(await client.llen(self._keys[0]))
        async with self._restoring:  # one check at a time: a loss is put back once
            before = list(self._remembered)  # appended (and answered) before the read is sent
            with redis_errors():
                length, epoch, count = await client.eval(_STATE, keys=self._keys, args=[])
            if epoch == self._epoch and int(count) >= self._highest:
                if int(length) == 0:  # delivered, by this process or another, since they were appended
                    self.forget(before)
                self._highest = int(count)
                return int(length)
            if epoch is not None and epoch == self._epoch:  # older: every other process must notice too
                with redis_errors():
                    await client.eval(_RENEW, keys=self._keys[1:2], args=[epoch, _new_epoch()])
            await self._restore(list(self._remembered.items()))
            with redis_errors():
                return int(await client.llen(self._keys[0]))

    async def _restore(self, entries: list[tuple[str, str]]) -> None:
        log.error("Redis came back without the event outbox's latest entries (restarted empty, or older): "
                  "%d events this process outboxed and had not seen delivered are put back (some may be "
                  "delivered twice)", len(entries))
        self._epoch = None  # whatever Redis holds now is the epoch they are put back under
        for start in range(0, len(entries), RESTORE_BATCH):
            batch = entries[start:start + RESTORE_BATCH]
            epoch, count = await self._push([text for _, text in batch])
            self._saw(epoch, count)
            EVENTS_RESTORED.inc(len(batch))

    async def _push(self, texts: list[str]) -> tuple[str, int]:
        client: Any = self._connection.client
        with redis_errors():
            epoch, count = await client.eval(_APPEND, keys=self._keys, args=[_new_epoch(), *texts])
        return str(epoch), int(count)

    def _saw(self, epoch: str | None, count: int) -> None:
        if epoch != self._epoch:
            self._epoch, self._highest = epoch, count
        else:
            self._highest = max(self._highest, count)

    def _remember(self, event_id: str, text: str) -> None:
        self._remembered[event_id] = text
        if len(self._remembered) <= JOURNAL_LIMIT:
            self._overflowing = False
            return
        del self._remembered[next(iter(self._remembered))]
        if not self._overflowing:
            self._overflowing = True
            log.warning("more than %d events of this process wait in the Redis outbox: the oldest are no longer "
                        "remembered, and would not be put back if Redis lost them", JOURNAL_LIMIT)


def _new_epoch() -> str:
    return secrets.token_hex(8)
