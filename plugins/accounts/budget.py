"""How many verification mails one mailbox may get from registrations and email changes.

`verify_request` and `forgot_password` limit the mails an address gets through their rate-limit
steps, but a registration and a change of email mail the address too: an account holder switching
their email between someone else's address and their own sent that address a mail per switch, and
registrations of `victim+1@…`, `victim+2@…` (one mailbox, many addresses) a mail each, at the speed
of the requests. Here each mailbox (the address without its `+tag`) has a budget of mails per
window, spent only by a registration or a real change (a profile form that posts the same address
back spends nothing); beyond it the request is refused with 429 and Retry-After, before anything is
saved.

With Redis the budget is shared by every instance; without it, per process (the rate limits'
window counters, app/clients/counters.py). Redis down: the request goes through (as the rate limits
let requests through), a mail is never the reason a user cannot register or change their address.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Final, final

from app import OutageLog, RedisUnavailable, WindowCounter

KEY_PREFIX: Final = "turnstile:accounts:verification-mails:"
LIMIT: Final = 3  # as verify_request's per-address limit
WINDOW_S: Final = 600
log = logging.getLogger("turnstile.accounts")


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
    """`spend(address)`: None when a mail may go, else the seconds until one may.

    Counted by the rate limits' window counter (Redis's, shared, or this process's).
    """

    def __init__(self, counter: WindowCounter, *, limit: int = LIMIT, window_s: int = WINDOW_S) -> None:
        self._counter = counter
        self.limit = limit
        self.window_s = window_s
        self._outage = OutageLog(log, "the mail budget (Redis)")

    async def spend(self, address: str) -> int | None:
        try:
            spent, left_ms = await self._counter.hit(_key(address), self.window_s * 1000)
        except RedisUnavailable as exc:
            self._outage.warning("counting a verification mail (the request goes through)", exc)
            return None
        self._outage.ok()
        return None if spent <= self.limit else max(1, math.ceil(left_ms / 1000))

    async def give_back(self, address: str) -> None:
        """A mail spent for a registration or change that saved nothing (the address was taken, the
        body refused): it goes back, or failed attempts alone would lock the mailbox out."""
        try:
            await self._counter.refund(_key(address))
        except RedisUnavailable as exc:
            self._outage.warning("giving back a verification mail", exc)
