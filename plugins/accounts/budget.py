"""How many verification mails one mailbox may get from registrations and email changes.

`verify_request` and `forgot_password` limit the mails an address gets through their rate-limit
steps, but a registration and a change of email mail the address too: an account holder switching
their email between someone else's address and their own sent that address a mail per switch, and
registrations of `victim+1@…`, `victim+2@…` (one mailbox, many addresses) a mail each, at the speed
of the requests. Here each mailbox (the address without its `+tag`) has a budget of mails per
window, spent only by a registration or a real change (a profile form that posts the same address
back spends nothing); beyond it the request is refused with 429 and Retry-After, before anything is
saved.

With Redis the budget is shared by every instance (`INCR`, and the window's expiry set by the
first mail); without it, per process. Redis down: the request goes through (as the rate limits
let requests through), a mail is never the reason a user cannot register or change their address.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final, final

from app import OutageLog, RedisConnection, RedisUnavailable, redis_errors

KEY_PREFIX: Final = "turnstile:accounts:verification-mails:"
LIMIT: Final = 3  # as verify_request's per-address limit
WINDOW_S: Final = 600
log = logging.getLogger("turnstile.accounts")
# KEYS[1] the mailbox's count, ARGV[1] the window: one more mail, the window's end set by the
# first (or by any that finds none: never a count without an expiry); the count and its seconds left.
_SPEND: Final = """
local spent = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {spent, redis.call('TTL', KEYS[1])}
"""


def mailbox(address: str) -> str:
    """The mailbox an (already normalised) address reaches: without the local part's `+tag`,
    which many providers deliver to the same mailbox."""
    local, at, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}{at}{domain}" if at else address


def _key(address: str) -> str:
    # The mailbox hashed: a key name is no place for personal data (`redis-cli --scan` shows it).
    return KEY_PREFIX + hashlib.sha256(mailbox(address).encode()).hexdigest()[:32]


@final
class VerificationMailBudget:
    """`spend(address)`: None when a mail may go, else the seconds until one may."""

    def __init__(
        self, redis: RedisConnection | None, *, limit: int = LIMIT, window_s: int = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._local: dict[str, tuple[int, float]] = {}  # key -> (mails, window's end)
        self._outage = OutageLog(log, "the mail budget (Redis)")

    async def spend(self, address: str) -> int | None:
        key = _key(address)
        if self._redis is None:
            return self._spend_locally(key)
        client: Any = self._redis.client
        try:
            with redis_errors():
                spent, left = await client.eval(_SPEND, keys=[key], args=[self.window_s])
        except RedisUnavailable as exc:
            self._outage.warning("counting a verification mail (the request goes through)", exc)
            return None
        self._outage.ok()
        return None if int(spent) <= self.limit else max(1, int(left))

    def _spend_locally(self, key: str) -> int | None:
        now = self._clock()
        if len(self._local) > 10_000:
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        spent, ends = self._local.get(key, (0, now + self.window_s))
        if ends <= now:
            spent, ends = 0, now + self.window_s
        if spent >= self.limit:
            return max(1, math.ceil(ends - now))
        self._local[key] = (spent + 1, ends)
        return None
