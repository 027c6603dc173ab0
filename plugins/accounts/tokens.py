"""Tokens in mails: single-use, purpose-bound, expiring, and tied to the state they were issued for.

A token is 32 random bytes (URL-safe text) that only the mail carries. The store keeps a
record under the token's SHA-256, never the token itself, so whoever reads Redis (or a dump
of it) cannot use what they read. The key names the purpose, so a verification token looked
up as a reset token finds nothing. Taking a record deletes it in the same step (Redis
``GETDEL``, atomic): of two requests with one token, on one instance or two, one gets it.

The record holds what the token was issued for (the user, a proof of the address the mail went
to, and for a reset a fingerprint of the password hash then stored); `plugins.accounts.redeem`
compares it with the account as it is now, so a password changed by any route, or an email
changed, kills the tokens issued before. The address itself is not kept: the proof is an HMAC
of it keyed by the token, which only the mail carries, so a record outliving its account (a
deleted user, an address changed) names nobody to whoever reads Redis, and cannot be tested
against guessed addresses. An email changed back would make the old address's
tokens match again, so a change of address also voids every token the user was sent before it
(`void_issued_before`: one record per user, as long as a token lives).

Redis when the service has one (shared by every instance), process memory otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Final, Protocol, final

import attrs
import orjson
from coredis import PureToken

from app import RedisConnection, redis_errors

KEY_PREFIX: Final = "turnstile:accounts:token:"
VOID_PREFIX: Final = "turnstile:accounts:void:"
VERIFY: Final = "verify"
RESET: Final = "reset"
PURPOSES: Final = (VERIFY, RESET)


@attrs.frozen(kw_only=True)
class TokenRecord:
    """What a token was issued for. `state`: a fingerprint of what must not have changed since.
    `issued_at` is 0 in records written before it was kept: void once any change voids them.
    `email_proof`: `address_proof` of the address the mail went to; records written before it
    was kept hold the address itself in `email` instead (empty in newer ones)."""

    purpose: str
    user_id: int
    state: str
    expires_at: float
    issued_at: float = 0.0
    email_proof: str = ""
    email: str = ""

    def sent_to(self, token: str, email: str) -> bool:
        """Whether the mail carrying `token` went to `email` (normalised, as it was at issue)."""
        if self.email_proof:
            return hmac.compare_digest(self.email_proof, address_proof(token, email))
        return bool(self.email) and self.email == email

    def to_json(self) -> str:
        fields = attrs.asdict(self)
        if not self.email:  # only a record of an older build, given back, holds one
            del fields["email"]
        return orjson.dumps(fields).decode()

    @classmethod
    def from_json(cls, text: str) -> TokenRecord | None:
        try:
            data = orjson.loads(text)
            return cls(purpose=str(data["purpose"]), user_id=int(data["user_id"]), state=str(data["state"]),
                       expires_at=float(data["expires_at"]), issued_at=float(data.get("issued_at", 0.0)),
                       email_proof=str(data.get("email_proof", "")), email=str(data.get("email", "")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def address_proof(token: str, email: str) -> str:
    """An HMAC of `email` keyed by `token`: equal for the same pair, and without the token (never
    stored) no way back to the address."""
    return hmac.new(token.encode(), email.encode(), hashlib.sha256).hexdigest()


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the stored hash: equal while the password is unchanged, never the hash."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


class RecordStore(Protocol):
    """Records under keys, each with a lifetime; `take` removes what it returns, atomically."""

    async def put(self, key: str, value: str, ttl_s: float) -> None: ...

    async def take(self, key: str) -> str | None: ...

    async def get(self, key: str) -> str | None: ...

    async def put_back(self, key: str, value: str, ttl_s: float) -> None:
        """Store `value` again unless the key holds something (a record given back after a failure)."""


@final
class MemoryRecordStore:
    """The embedded store: one process's memory; expired records are dropped as others are written."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._records: dict[str, tuple[str, float]] = {}
        self._clock = clock

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        now = self._clock()
        for stale in [k for k, (_, expires) in self._records.items() if expires <= now]:
            del self._records[stale]
        self._records[key] = (value, now + ttl_s)

    async def take(self, key: str) -> str | None:
        entry = self._records.pop(key, None)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    async def get(self, key: str) -> str | None:
        entry = self._records.get(key)
        return None if entry is None or entry[1] <= self._clock() else entry[0]

    async def put_back(self, key: str, value: str, ttl_s: float) -> None:
        if key not in self._records:
            await self.put(key, value, ttl_s)


@final
class RedisRecordStore:
    """Records as Redis strings with a TTL; `take` is ``GETDEL`` (Redis 6.2+)."""

    def __init__(self, redis: RedisConnection) -> None:
        self._redis = redis

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        with redis_errors():
            await self._redis.client.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def take(self, key: str) -> str | None:
        with redis_errors():
            value = await self._redis.client.getdel(key)
        return None if value is None else str(value)

    async def get(self, key: str) -> str | None:
        with redis_errors():
            value = await self._redis.client.get(key)
        return None if value is None else str(value)

    async def put_back(self, key: str, value: str, ttl_s: float) -> None:
        with redis_errors():
            await self._redis.client.set(key, value, px=max(1, int(ttl_s * 1000)), condition=PureToken.NX)


@final
class MailTokens:
    """Issues and redeems the tokens mails carry.

    Raises `RedisUnavailable` (from the Redis store) when token state cannot be reached.
    """

    def __init__(self, store: RecordStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def issue(self, purpose: str, *, user_id: int, email: str, state: str, ttl_s: int) -> str:
        """A new token for `purpose`, alive `ttl_s` seconds, for a mail to `email` (normalised)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        record = TokenRecord(purpose=purpose, user_id=user_id, email_proof=address_proof(token, email), state=state,
                             expires_at=now + ttl_s, issued_at=now)
        await self._store.put(_key(purpose, token), record.to_json(), ttl_s)
        return token

    async def redeem(self, purpose: str, token: str) -> TokenRecord | None:
        """The record of a live `purpose` token, which is spent from now on; None for a token
        that is unknown, of another purpose, expired or already used."""
        value = await self._store.take(_key(purpose, token))
        record = None if value is None else TokenRecord.from_json(value)
        if record is None or record.purpose != purpose or record.expires_at <= self._clock():
            return None
        voided = await self._store.get(_void_key(record.user_id))
        if voided is not None and record.issued_at < float(voided):
            return None
        return record

    async def void_issued_before(self, user_id: int, ttl_s: int) -> None:
        """Every token issued to `user_id` until now is refused from now on; `ttl_s`: the longest
        a token lives, after which there is nothing left to void."""
        await self._store.put(_void_key(user_id), repr(self._clock()), ttl_s)

    async def give_back(self, token: str, record: TokenRecord) -> None:
        """Make a redeemed token usable again for the rest of its life (the service could not act on it)."""
        left = record.expires_at - self._clock()
        if left > 0:
            await self._store.put_back(_key(record.purpose, token), record.to_json(), left)


def _void_key(user_id: int) -> str:
    return f"{VOID_PREFIX}{user_id}"


def _key(purpose: str, token: str) -> str:
    return f"{KEY_PREFIX}{purpose}:{hashlib.sha256(token.encode()).hexdigest()}"
