"""Which sessions (refresh-token families) each user has, for listing and ending them.

The family record in the token store (`plugins.auth.store`) stays the one word on whether a
session lives; this index only remembers, per user, the families a login started and when each
was created and last refreshed. Listing drops what the token store no longer knows (logged
out, replayed, revoked, expired), so a stale entry is never shown as a live session.

Redis when the service has one (``{prefix}sessions:{user_id}``, a hash of family → times that
lives as long as a refresh token), process memory otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol, final

import attrs

from app import RedisConnection, redis_errors

_SEPARATOR: Final = " "


@attrs.frozen
class SessionTimes:
    """When a session began (its login) and was last used (its latest refresh), epoch seconds."""

    created_at: float
    last_used_at: float

    def encode(self) -> str:
        return f"{self.created_at!r}{_SEPARATOR}{self.last_used_at!r}"

    @classmethod
    def decode(cls, text: str) -> SessionTimes | None:
        created, _, used = text.partition(_SEPARATOR)
        try:
            return cls(float(created), float(used))
        except ValueError:
            return None


class SessionIndex(Protocol):
    """Families per user with their times. `ttl_s`: how long an entry may matter (a refresh token's life)."""

    async def started(self, user_id: int, family: str, at: float, ttl_s: int) -> None: ...

    async def used(self, user_id: int, family: str, at: float, ttl_s: int) -> None: ...

    async def of(self, user_id: int) -> dict[str, SessionTimes]:
        """The families indexed for `user_id` (live or not: the token store decides)."""

    async def forget(self, user_id: int, *families: str) -> None: ...

    async def forget_user(self, user_id: int) -> None:
        """Drop everything indexed for `user_id` (a deleted user: its sessions died with it)."""


@final
class MemorySessionIndex:
    """The embedded index: one process's memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._users: dict[int, dict[str, tuple[SessionTimes, float]]] = {}
        self._clock = clock

    async def started(self, user_id: int, family: str, at: float, ttl_s: int) -> None:
        self._users.setdefault(user_id, {})[family] = (SessionTimes(at, at), self._clock() + ttl_s)

    async def used(self, user_id: int, family: str, at: float, ttl_s: int) -> None:
        entry = self._users.get(user_id, {}).get(family)
        if entry is not None:
            self._users[user_id][family] = (SessionTimes(entry[0].created_at, at), self._clock() + ttl_s)

    async def of(self, user_id: int) -> dict[str, SessionTimes]:
        now = self._clock()
        entries = self._users.get(user_id, {})
        for family in [f for f, (_, expires) in entries.items() if expires <= now]:
            del entries[family]
        return {family: times for family, (times, _) in entries.items()}

    async def forget(self, user_id: int, *families: str) -> None:
        entries = self._users.get(user_id, {})
        for family in families:
            entries.pop(family, None)

    async def forget_user(self, user_id: int) -> None:
        self._users.pop(user_id, None)


@final
class RedisSessionIndex:
    """One Redis hash per user: family → "created last_used", expiring with the newest session."""

    def __init__(self, redis: RedisConnection, prefix: str = "turnstile:auth:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def started(self, user_id: int, family: str, at: float, ttl_s: int) -> None:
        await self._write(user_id, family, SessionTimes(at, at), ttl_s)

    async def used(self, user_id: int, family: str, at: float, ttl_s: int) -> None:
        with redis_errors():
            current = await self._redis.client.hget(self._key(user_id), family)
        times = None if current is None else SessionTimes.decode(str(current))
        if times is not None:
            await self._write(user_id, family, SessionTimes(times.created_at, at), ttl_s)

    async def of(self, user_id: int) -> dict[str, SessionTimes]:
        with redis_errors():
            raw = await self._redis.client.hgetall(self._key(user_id))
        found = {str(family): SessionTimes.decode(str(text)) for family, text in raw.items()}
        return {family: times for family, times in found.items() if times is not None}

    async def forget(self, user_id: int, *families: str) -> None:
        if families:
            with redis_errors():
                await self._redis.client.hdel(self._key(user_id), list(families))

    async def forget_user(self, user_id: int) -> None:
        with redis_errors():
            await self._redis.client.delete([self._key(user_id)])

    async def _write(self, user_id: int, family: str, times: SessionTimes, ttl_s: int) -> None:
        key = self._key(user_id)
        with redis_errors():
            await self._redis.client.hset(key, {family: times.encode()})
            # The hash outlives every family in it: each write pushes its end out.
            await self._redis.client.expire(key, ttl_s)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}sessions:{user_id}"
