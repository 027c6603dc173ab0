"""Sessions every instance shares: refresh-token families (user-level revocation cut-offs
are in plugins/auth/revocations.py).

Redis when the service has one (`RedisTokenStore`), process memory otherwise
(`MemoryTokenStore`, the embedded default for one process).

- A family is the chain of refresh tokens one login starts. It records the jti of its
  current token; refreshing must present exactly that jti and moves it on (rotation).
  Presenting an older jti means the token was stolen or replayed: the whole family is
  revoked. Logout revokes the family too.
- An access token names its family (its session): it is accepted only while the family
  lives, so a logout or a detected reuse ends the session's access tokens at once too.
- A grace window (`grace_s`, a few seconds) forgives a client that refreshes one token twice
  (a retry, two tabs, two instances): the second refresh gets the same new pair instead of
  tripping reuse detection, as long as that pair is still the family's current one. A replay
  after the window still revokes the family.
- Session state fails closed: a family whose record is missing (ended, expired, or lost with
  a Redis node that restarted empty) is dead; its users log in again.

Failure: when Redis is down every method of `RedisTokenStore` raises `RedisUnavailable`.
Logins, refreshes and logouts then answer 503: families are never guessed. The per-request
access check instead goes through `MirroredTokenStore`, which answers from this process's
own record of ended sessions (see there), so reads keep working during a Redis outage as
contract §8 asks.
"""

from __future__ import annotations

import enum
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Protocol

import attrs

from app import RedisConnection, RedisUnavailable, RollbackWatch, redis_errors


class Rotation(enum.Enum):
    """What presenting a refresh token to its family did."""

    ROTATED = "rotated"  # it was the current one; the new jti is current now
    REPEATED = "repeated"  # it was rotated a moment ago (within the grace window): same new pair
    REUSED = "reused"  # an older one: the family is revoked
    UNKNOWN = "unknown"  # no such family: expired, logged out or revoked before


@attrs.frozen
class Rotated:
    """A rotation's outcome; for `REPEATED`, the pair the first rotation handed out."""

    rotation: Rotation
    pair: str | None = None


class TokenStore(Protocol):
    """Refresh-token families."""

    def new_family(self) -> str:
        """An id for a new family, whose record the store can write now if any can be."""

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        """Record `jti` as the current token of a new family that lives `ttl_s` seconds."""

    async def rotate(
        self, family: str, presented: str, new_jti: str, ttl_s: int, *, pair: str = "", grace_s: float = 0
    ) -> Rotated:
        """Make `new_jti` current when `presented` is, keeping `pair` (the new tokens, as text)
        for `grace_s` seconds; when `presented` was rotated within that window and its pair's
        jti is still current, answer that pair again; else revoke the family."""

    async def revoke_family(self, family: str) -> None: ...

    async def family_alive(self, family: str) -> bool:
        """Whether the session `family` still lives (not logged out, reused, revoked or expired)."""


# How many ends are recorded between two sweeps of the expired ones.
_PRUNE_EVERY: Final = 1024


class MemoryTokenStore:
    """The embedded store: one process's memory, entries dropped when they expire."""

    def __init__(self, *, revocation_ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._families: dict[str, tuple[str, float]] = {}
        # Families this process saw end, kept as long as their tokens could live: the
        # Redis-down fallback of `MirroredTokenStore` consults it.
        self._ended: dict[str, float] = {}
        # (family, presented jti) -> (the jti it was rotated to, the pair handed out, expiry)
        self._grace: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._revocation_ttl_s = revocation_ttl_s
        self._clock = clock
        self._recorded = 0

    def new_family(self) -> str:
        return uuid.uuid4().hex

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        self._prune()
        self._families[family] = (jti, self._clock() + ttl_s)

    async def rotate(
        self, family: str, presented: str, new_jti: str, ttl_s: int, *, pair: str = "", grace_s: float = 0
    ) -> Rotated:
        now = self._clock()
        entry = self._families.get(family)
        if entry is None or entry[1] <= now:
            self._families.pop(family, None)
            return Rotated(Rotation.UNKNOWN)
        if entry[0] == presented:
            self._families[family] = (new_jti, now + ttl_s)
            if grace_s > 0:
                self._grace[(family, presented)] = (new_jti, pair, now + grace_s)
            return Rotated(Rotation.ROTATED)
        again = self._grace.get((family, presented))
        if again is not None and again[2] > now and again[0] == entry[0]:
            return Rotated(Rotation.REPEATED, again[1])
        await self.revoke_family(family)
        return Rotated(Rotation.REUSED)

    async def revoke_family(self, family: str) -> None:
        self._families.pop(family, None)
        self.remember_ended(family)

    async def family_alive(self, family: str) -> bool:
        entry = self._families.get(family)
        return entry is not None and entry[1] > self._clock()

    def remember_ended(self, family: str, *, for_s: float | None = None) -> None:
        """Record that `family` ended (here or elsewhere), for `for_s` seconds (by default as
        long as any of its tokens could live)."""
        self._ended[family] = self._clock() + (self._revocation_ttl_s if for_s is None else for_s)
        self._recorded += 1
        if self._recorded % _PRUNE_EVERY == 0:  # ends heard from every instance: kept bounded
            self._prune()

    def ended(self, family: str) -> bool:
        """Whether this process knows `family` to have ended."""
        expires = self._ended.get(family)
        if expires is not None and expires <= self._clock():
            del self._ended[family]
            return False
        return expires is not None

    def _prune(self) -> None:
        now = self._clock()
        for family in [f for f, (_, expires) in self._families.items() if expires <= now]:
            del self._families[family]
        for family in [f for f, expires in self._ended.items() if expires <= now]:
            del self._ended[family]
        for key in [k for k, (_, _, expires) in self._grace.items() if expires <= now]:
            del self._grace[key]


# KEYS[1] the family, KEYS[2] the presented jti's grace entry (one hash slot: see `_grace`);
# ARGV[1] presented jti, ARGV[2] new jti, ARGV[3] family ttl (s), ARGV[4] the new pair, ARGV[5]
# grace (ms, 0: none). Atomic, so two instances refreshing one token cannot both rotate it.
_ROTATE: Final = """
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. ARGV[4], 'PX', ARGV[5]) end
  return {1}
end
local again = redis.call('GET', KEYS[2])
if again then
  local space = string.find(again, ' ', 1, true)
  if space and string.sub(again, 1, space - 1) == current then return {2, string.sub(again, space + 1)} end
end
redis.call('DEL', KEYS[1])
return {-1}
"""
NEW_FAMILY_TRIES: Final = 16
_ROTATIONS: Final = {1: Rotation.ROTATED, 2: Rotation.REPEATED, -1: Rotation.REUSED, 0: Rotation.UNKNOWN}


# Redis keys: `{KEY_PREFIX}fam:{family}` and `{KEY_PREFIX}revoked:{user_id}`. Both are read on
# every authenticated request, so this process mirrors them (the plugin's
# `register_mirrored_keys`); every write through this store drops the local copy at once.
KEY_PREFIX: Final = "turnstile:auth:"
FAMILY_PREFIX: Final = f"{KEY_PREFIX}fam:"
MIRRORED_PREFIXES: Final = (f"{KEY_PREFIX}revoked:", FAMILY_PREFIX)


class RedisTokenStore:
    """The shared store: one Redis key per family, ``{prefix}fam:{family}``, holding its current
    jti, with the family's TTL."""

    def __init__(self, redis: RedisConnection, *, prefix: str = KEY_PREFIX, watch: RollbackWatch | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self._watch = watch  # counts each family ended, so a Redis that revives it is noticed

    def new_family(self) -> str:
        """A random id whose key lives on a node that answers: with one master of a cluster
        down, new sessions go to the others (a few tries; the keys are spread evenly)."""
        family = uuid.uuid4().hex
        for _ in range(NEW_FAMILY_TRIES):
            if self._redis.answers(self._family(family)):
                break
            family = uuid.uuid4().hex
        return family

    # Family keys are mirrored locally (the access check reads one per request), so each
    # write also drops this process's copy at once instead of waiting for Redis's push.

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        key = self._family(family)
        try:
            with redis_errors():
                await self._redis.client.set(key, jti, ex=ttl_s)
        finally:
            self._redis.invalidate_local(key)

    async def rotate(
        self, family: str, presented: str, new_jti: str, ttl_s: int, *, pair: str = "", grace_s: float = 0
    ) -> Rotated:
        key = self._family(family)
        grace_ms = max(0, math.ceil(grace_s * 1000))
        try:
            with redis_errors():
                result: Any = await self._redis.client.eval(
                    _ROTATE, keys=[key, self._grace(key, presented)], args=[presented, new_jti, ttl_s, pair, grace_ms]
                )
        finally:
            self._redis.invalidate_local(key)
        if not isinstance(result, list) or not result or not isinstance(result[0], int):
            return Rotated(Rotation.UNKNOWN)
        rotation = _ROTATIONS.get(result[0], Rotation.UNKNOWN)
        if self._watch is not None and rotation in (Rotation.ROTATED, Rotation.REUSED):
            # Lost with a Redis that comes back older, a rotation would make the spent refresh
            # token current again, and an end for reuse would revive the family: counted, so
            # that such a rollback is noticed (app/clients/redis/rollback.py).
            await self._watch.counted()
        return Rotated(rotation, str(result[1]) if rotation is Rotation.REPEATED else None)

    async def revoke_family(self, family: str) -> None:
        key = self._family(family)
        try:
            with redis_errors():
                await self._redis.client.delete([key])
        finally:
            self._redis.invalidate_local(key)
        if self._watch is not None:
            await self._watch.counted()

    def defer_revoke(self, family: str) -> None:
        """End `family` in Redis as soon as it answers again (a `revoke_family` it could not take)."""
        self._redis.pending.defer(self._family(family), f"end of session {family[:8]}…",
                                  lambda: self.revoke_family(family))

    async def family_alive(self, family: str) -> bool:
        with redis_errors():
            return await self._redis.get(self._family(family)) is not None

    def _family(self, family: str) -> str:
        return f"{self._prefix}fam:{family}"

    def _grace(self, family_key: str, presented: str) -> str:
        # The family key in braces is a hash tag: on a cluster the grace entry shares its slot,
        # as one script's keys must. It is outside the mirrored prefix.
        return f"{self._prefix}grace:{{{family_key}}}:{presented}"


class MirroredTokenStore:
    """The Redis store, with this process's record of ended sessions for a Redis outage.

    While Redis is down the access check answers from that record instead of refusing every
    request: the contract wants reads to keep working then. The record also holds the sessions
    other instances ended while Redis answered (plugins/auth/session_ends.py). What it cannot
    know is an end it did not hear before the outage (a process started during it); that window
    is bounded by the access token's lifetime (15 minutes by default).
    Families stay strict: rotation and logout need Redis and answer 503 without it; a session
    ended meanwhile (a logout, an end of session) is ended in Redis by this process as soon as
    it answers again (contract §9a), and this process refuses it from the start.
    """

    def __init__(
        self, remote: RedisTokenStore, local: MemoryTokenStore, *, on_fallback: Callable[[BaseException], None]
    ) -> None:
        self.remote = remote
        self.local = local
        self._on_fallback = on_fallback

    def new_family(self) -> str:
        return self.remote.new_family()

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        await self.remote.start_family(family, jti, ttl_s)

    async def rotate(
        self, family: str, presented: str, new_jti: str, ttl_s: int, *, pair: str = "", grace_s: float = 0
    ) -> Rotated:
        rotated = await self.remote.rotate(family, presented, new_jti, ttl_s, pair=pair, grace_s=grace_s)
        if rotated.rotation is Rotation.REUSED:
            self.local.remember_ended(family)
        return rotated

    async def revoke_family(self, family: str) -> None:
        self.local.remember_ended(family)  # first: it holds even when Redis is down
        try:
            await self.remote.revoke_family(family)
        except RedisUnavailable:
            # Made by this process as soon as Redis answers again (contract §9a), so the other
            # instances refuse the session then even if the client never retries. The caller
            # still answers 503: until then they do not know.
            self.remote.defer_revoke(family)
            raise

    async def family_alive(self, family: str) -> bool:
        if self.local.ended(family):
            # Ended here, perhaps while Redis was away: Redis may not have heard yet.
            return False
        try:
            alive = await self.remote.family_alive(family)
        except RedisUnavailable as exc:
            # Sessions live in Redis; without it only the ends this process saw are known.
            self._on_fallback(exc)
            return not self.local.ended(family)
        if not alive:
            self.local.remember_ended(family)
        return alive
