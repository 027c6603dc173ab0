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
import time
from collections.abc import Callable
from typing import Final, Protocol

from app import RedisConnection, RedisUnavailable, redis_errors


class Rotation(enum.Enum):
    """What presenting a refresh token to its family did."""

    ROTATED = "rotated"  # it was the current one; the new jti is current now
    REUSED = "reused"  # an older one: the family is revoked
    UNKNOWN = "unknown"  # no such family: expired, logged out or revoked before


class TokenStore(Protocol):
    """Refresh-token families."""

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        """Record `jti` as the current token of a new family that lives `ttl_s` seconds."""

    async def rotate(self, family: str, presented: str, new_jti: str, ttl_s: int) -> Rotation:
        """Make `new_jti` current when `presented` is; revoke the family when it is an older one."""

    async def revoke_family(self, family: str) -> None: ...

    async def family_alive(self, family: str) -> bool:
        """Whether the session `family` still lives (not logged out, reused, revoked or expired)."""


class MemoryTokenStore:
    """The embedded store: one process's memory, entries dropped when they expire."""

    def __init__(self, *, revocation_ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._families: dict[str, tuple[str, float]] = {}
        # Families this process saw end, kept as long as their tokens could live: the
        # Redis-down fallback of `MirroredTokenStore` consults it.
        self._ended: dict[str, float] = {}
        self._revocation_ttl_s = revocation_ttl_s
        self._clock = clock

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        self._prune()
        self._families[family] = (jti, self._clock() + ttl_s)

    async def rotate(self, family: str, presented: str, new_jti: str, ttl_s: int) -> Rotation:
        entry = self._families.get(family)
        if entry is None or entry[1] <= self._clock():
            self._families.pop(family, None)
            return Rotation.UNKNOWN
        if entry[0] != presented:
            await self.revoke_family(family)
            return Rotation.REUSED
        self._families[family] = (new_jti, self._clock() + ttl_s)
        return Rotation.ROTATED

    async def revoke_family(self, family: str) -> None:
        self._families.pop(family, None)
        self.remember_ended(family)

    async def family_alive(self, family: str) -> bool:
        entry = self._families.get(family)
        return entry is not None and entry[1] > self._clock()

    def remember_ended(self, family: str) -> None:
        """Record that `family` ended (here or elsewhere)."""
        self._ended[family] = self._clock() + self._revocation_ttl_s

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


# KEYS[1] family; ARGV[1] presented jti, ARGV[2] new jti, ARGV[3] ttl.
# Atomic, so two instances refreshing the same token cannot both rotate it.
_ROTATE: Final = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
redis.call('DEL', KEYS[1])
return -1
"""
_ROTATIONS: Final = {1: Rotation.ROTATED, -1: Rotation.REUSED, 0: Rotation.UNKNOWN}


class RedisTokenStore:
    """The shared store: one Redis key per family, ``{prefix}fam:{family}``, holding its current
    jti, with the family's TTL."""

    def __init__(self, redis: RedisConnection, *, prefix: str = "turnstile:auth:") -> None:
        self._redis = redis
        self._prefix = prefix

    # Family keys are mirrored locally (the access check reads one per request), so each
    # write also drops this process's copy at once instead of waiting for Redis's push.

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        key = self._family(family)
        try:
            with redis_errors():
                await self._redis.client.set(key, jti, ex=ttl_s)
        finally:
            self._redis.invalidate_local(key)

    async def rotate(self, family: str, presented: str, new_jti: str, ttl_s: int) -> Rotation:
        key = self._family(family)
        try:
            with redis_errors():
                result = await self._redis.client.eval(_ROTATE, keys=[key], args=[presented, new_jti, ttl_s])
        finally:
            self._redis.invalidate_local(key)
        return _ROTATIONS.get(result, Rotation.UNKNOWN) if isinstance(result, int) else Rotation.UNKNOWN

    async def revoke_family(self, family: str) -> None:
        key = self._family(family)
        try:
            with redis_errors():
                await self._redis.client.delete([key])
        finally:
            self._redis.invalidate_local(key)

    async def family_alive(self, family: str) -> bool:
        with redis_errors():
            return await self._redis.get(self._family(family)) is not None

    def _family(self, family: str) -> str:
        return f"{self._prefix}fam:{family}"


class MirroredTokenStore:
    """The Redis store, with this process's record of ended sessions for a Redis outage.

    While Redis is down the access check answers from that record instead of refusing every
    request: the contract wants reads to keep working then. What it cannot know is a session
    another instance ended meanwhile (which could only be a reuse detected just before the
    outage); that window is bounded by the access token's lifetime (15 minutes by default).
    Families stay strict: rotation and logout need Redis and answer 503 without it.
    """

    def __init__(
        self, remote: RedisTokenStore, local: MemoryTokenStore, *, on_fallback: Callable[[BaseException], None]
    ) -> None:
        self.remote = remote
        self.local = local
        self._on_fallback = on_fallback

    async def start_family(self, family: str, jti: str, ttl_s: int) -> None:
        await self.remote.start_family(family, jti, ttl_s)

    async def rotate(self, family: str, presented: str, new_jti: str, ttl_s: int) -> Rotation:
        rotation = await self.remote.rotate(family, presented, new_jti, ttl_s)
        if rotation is Rotation.REUSED:
            self.local.remember_ended(family)
        return rotation

    async def revoke_family(self, family: str) -> None:
        self.local.remember_ended(family)  # first: it holds even when Redis is down
        await self.remote.revoke_family(family)

    async def family_alive(self, family: str) -> bool:
        try:
            alive = await self.remote.family_alive(family)
        except RedisUnavailable as exc:
            # Sessions live in Redis; without it only the ends this process saw are known.
            self._on_fallback(exc)
            return not self.local.ended(family)
        if not alive:
            self.local.remember_ended(family)
        return alive
