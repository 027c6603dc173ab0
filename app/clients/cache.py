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

import attrs
from coredis import PureToken
from coredis.commands.script import Script
from coredis.exceptions import NoScriptError

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

# Read a key and, unless it holds an answer, claim its fetch, in one round trip. KEYS[1] the entry,
# KEYS[2] its lease (one hash slot: the lease key's hash tag is the entry's name). An answer is a
# value that neither starts with ARGV[3] nor (when ARGV[5] is 1) equals ARGV[4]. A lease names
# what the entry held when it was taken (a digest after "|"): one taken before the entry changed
# (a write's tombstone) is for an older fetch, and is taken over. Answers {0, the answer}, or
# {1, what the entry holds, the lease} when ARGV[1] took it for ARGV[2] ms, or {2, what the entry
# holds, the lease someone else holds}.
_READ_OR_CLAIM_SCRIPT: Final = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[3])) ~= ARGV[3]
    and not (ARGV[5] == '1' and current == ARGV[4]) then
  return {0, current}
end
local found = '|' .. (current and redis.sha1hex(current) or '-')
local held = redis.call('GET', KEYS[2])
if held and string.sub(held, -string.len(found)) == found then
  return {2, current, held}
end
local lease = ARGV[1] .. found
redis.call('SET', KEYS[2], lease, 'PX', ARGV[2])
return {1, current, lease}
"""
# A claimed fetch's answer: stored as `add` (ARGV[4] is 0) or `replace` of ARGV[1] would store it,
# and the lease ARGV[5] given up either way. Answers 1 when stored.
_FILL_SCRIPT: Final = """
local current = redis.call('GET', KEYS[1])
local stored = 0
if (ARGV[4] == '0' and not current) or (ARGV[4] == '1' and current == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return stored
"""
# Give a lease up (its fetch stored nothing): delete KEYS[1] if it still holds ARGV[1].
_RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@final
@attrs.frozen
class LeaseClaim:
    """How `CacheBackend.read` claims the fetch of a key that holds no answer.

    new_lease: makes the lease to claim with (called only when a claim is tried, just before);
        the lease a claim wins may carry a suffix after "|" (`Read.lease`).
    lost: told of a lease made by `new_lease` that was not won (its claim failed or lost).
    ttl_s: how long a lease lives unless given up: at most one fetch's time.
    not_answers: values that start with this are no answers (tombstones).
    not_answer: nor is this value, unless None (a "not found" the step does not keep).
    """

    new_lease: Callable[[], bytes]
    lost: Callable[[bytes], None]
    ttl_s: float
    not_answers: bytes
    not_answer: bytes | None = None

    def answers(self, value: bytes | None) -> bool:
        return value is not None and not value.startswith(self.not_answers) and value != self.not_answer


@final
@attrs.frozen
class Read:
    """What `CacheBackend.read` found: the key's `value`; when a claim was tried and that value is
    no answer, either the caller's `lease` (its claim won: it fetches) or the `holder`'s lease (a
    fetch of another is under way). Neither: no claim was tried (the value is this process's copy)."""

    value: bytes | None
    lease: bytes | None = None
    holder: bytes | None = None


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

    async def read(self, key: str, claim: LeaseClaim, *, fresh: bool = False) -> Read:
        """`key`'s value and, when it holds no answer, a claim of its fetch: of every caller of
        every instance that reads it so, one holds the lease (until it fills the key, gives the
        lease up, or the lease's time ends). A value read from this process's copy tries no claim
        unless `fresh`. Raises CacheUnavailable."""
        ...

    async def fill(self, key: str, seen: bytes | None, value: bytes, ttl_s: float, lease: bytes) -> bool:
        """Store as `add` (`seen` None) or `replace(key, seen, ...)` would, and give `lease` up. True if stored."""
        ...

    async def release(self, key: str, lease: bytes) -> None:
        """Give `lease` on `key`'s fetch up (nothing was stored). Raises CacheUnavailable."""
        ...

    async def set_or_defer(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store like `set`, or, when the backend cannot answer now, keep the write and make it
        as soon as it can, reading `key` as unavailable until then. True when stored now.

        For writes that must not be lost to an outage (an invalidation). Never raises
        CacheUnavailable.
        """
        ...


async def _evalsha(client: Any, script: Script[bytes], keys: list[str], args: list[Any]) -> Any:
    """`script` run by its digest, loaded first when the server does not have it (a restart).

    What `Script.__call__` does, without its per-call retry and transform wrappers: they cost
    this hot path (a miss's read) more than the command itself."""
    try:
        return await client.evalsha(script.sha, keys=keys, args=args)
    except NoScriptError:
        await client.script_load(script.script)
        return await client.evalsha(script.sha, keys=keys, args=args)


def _ttl_ms(ttl_s: float) -> int:
    # PX keeps sub-second TTLs exact; rounding up keeps a tiny TTL from meaning "no expiry".
    return max(_MIN_REDIS_TTL_MS, math.ceil(ttl_s * 1000))


def _lease_key(full: str) -> str:
    # The entry's name as the hash tag: the lease lives in its slot (Redis Cluster), and outside
    # the mirrored prefixes, so taking and giving it up pushes nothing to the instances.
    return f"{{{full}}}:lease"


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
        # Registered once: each runs by EVALSHA and is loaded again only if the server lost it.
        self._replace_script: Script[str] = Script(script=_REPLACE_SCRIPT)
        self._read_script: Script[bytes] = Script(script=_READ_OR_CLAIM_SCRIPT)
        self._fill_script: Script[bytes] = Script(script=_FILL_SCRIPT)
        self._release_script: Script[bytes] = Script(script=_RELEASE_SCRIPT)

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

    async def read(self, key: str, claim: LeaseClaim, *, fresh: bool = False) -> Read:
        full = self._prefix + key
        if self._connection.pending.holds(full) or "{" in full or "}" in full:
            # A key with a hash tag of its own cannot share its lease's slot: no claim, one fetch
            # per instance.
            return Read(await self.get(key))

        async def read_or_claim(client: Any, _key: str) -> tuple[bytes | None, Read]:
            lease = claim.new_lease()
            args: list[Any] = [lease, _ttl_ms(claim.ttl_s), claim.not_answers, claim.not_answer or b"",
                               "0" if claim.not_answer is None else "1"]
            try:
                with client.decoding(False) as raw:
                    reply: Any = await _evalsha(raw, self._read_script, [full, _lease_key(full)], args)
            except BaseException:
                claim.lost(lease)
                raise
            value = reply[1] if len(reply) > 1 else None
            outcome = int(reply[0])
            if outcome == 1:
                return value, Read(value, lease=reply[2])
            claim.lost(lease)
            return value, Read(value, holder=reply[2] if outcome == 2 else None)  # the script's answer

        try:
            with redis_errors():
                value, read = await self._connection.read_mirrored(full, read_or_claim, fresh=fresh)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc
        return read or Read(value)

    async def fill(self, key: str, seen: bytes | None, value: bytes, ttl_s: float, lease: bytes) -> bool:
        _check_ttl(ttl_s)
        full = self._prefix + key
        args = [seen or b"", value, _ttl_ms(ttl_s), "0" if seen is None else "1", lease]
        return int(await self._script(self._fill_script, [full, _lease_key(full)], args, invalidates=full)) == 1

    async def release(self, key: str, lease: bytes) -> None:
        await self._script(self._release_script, [_lease_key(self._prefix + key)], [lease], invalidates=None)

    async def _script(self, script: Script[bytes], keys: list[str], args: list[Any], *, invalidates: str | None) -> Any:
        try:
            # Bytes replies: stored values are compared and kept as they are.
            with redis_errors(), self._connection.client.decoding(False) as raw:
                return await _evalsha(raw, script, keys, args)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc
        finally:
            if invalidates is not None:
                self._connection.invalidate_local(invalidates)

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
        # Leases on fetches, by key: (lease, when it ends, what the key held when it was taken).
        self._leases: dict[str, tuple[bytes, float, bytes | None]] = {}

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

    async def read(self, key: str, claim: LeaseClaim, *, fresh: bool = False) -> Read:
        value = await self.get(key)
        if claim.answers(value):
            return Read(value)
        now = self._clock()
        held = self._leases.get(key)
        if held is not None and held[1] > now and held[2] == value:  # one for what the key holds now
            return Read(value, holder=held[0])
        lease = claim.new_lease()
        self._leases[key] = (lease, now + claim.ttl_s, value)
        return Read(value, lease=lease)

    async def fill(self, key: str, seen: bytes | None, value: bytes, ttl_s: float, lease: bytes) -> bool:
        try:
            return await (self.add(key, value, ttl_s) if seen is None else self.replace(key, seen, value, ttl_s))
        finally:
            await self.release(key, lease)

    async def release(self, key: str, lease: bytes) -> None:
        held = self._leases.get(key)
        if held is not None and held[0] == lease:
            del self._leases[key]
