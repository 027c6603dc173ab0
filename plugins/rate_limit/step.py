"""The `rate-limit` step: counts requests (or failed ones) per client, caller or body field; 429 past the limit.

When Redis is configured the counters live there (shared by every replica); otherwise in
this process. When Redis cannot be reached the step **fails open**: the request goes on, a
warning is logged once per outage and `turnstile_rate_limit_fail_open_total` counts it. A
limiter is defence in depth; failing closed would turn a Redis blip into an outage of login
for everyone, and argon2's cost still bounds how fast passwords can be tried meanwhile.

Keys are made from what the request *is* once validated: the client address the core
resolved (trusted proxies included; an IPv6 client is its /64), the authenticated actor, and fields of the validated,
normalised body. A key read from the raw body would let a client count one value while the
step after it acts on another.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from typing import Final

import attrs
from aiohttp import web
from prometheus_client import Counter

from app import (
    BuildContext,
    Handler,
    InternalError,
    MemoryWindowCounter,
    ProblemError,
    RedisUnavailable,
    RedisWindowCounter,
    TooManyRequests,
    WindowCounter,
    actor_key,
    body_key,
    client_address,
    redis_key,
)
from plugins.rate_limit.config import FAILURE_STATUSES, RateLimitConfig

log = logging.getLogger("turnstile.rate_limit")

KEY_PREFIX = "turnstile:rl:"
IPV6_CLIENT_PREFIX: Final = 64  # bits of an IPv6 address one client is counted by (`counted_client`)

REJECTED = Counter("turnstile_rate_limit_rejected_total", "Requests refused with 429, per limiter", ["limiter"])
FAIL_OPEN = Counter(
    "turnstile_rate_limit_fail_open_total",
    "Requests let through unchecked because the limiter's Redis was unreachable, per limiter",
    ["limiter"],
)


@attrs.define
class _Outage:
    """Whether the last Redis call failed, so an outage is logged once, not per request."""

    down: bool = False


@attrs.frozen
class RateLimitStep:
    config: RateLimitConfig
    counter: WindowCounter
    _outage: _Outage = attrs.field(factory=_Outage)

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        value = self.value_of(request)
        if value is None:
            return await handler(request)
        counted = await self.count(value)
        if self.config.count == "requests" or not counted:
            return await handler(request)
        # count = "failures": the hit taken above is held while the request runs and given
        # back when it did not fail, so parallel guesses cannot overshoot the limit.
        failed = True
        try:
            response = await handler(request)
            failed = response.status in FAILURE_STATUSES
            return response
        except ProblemError as exc:
            failed = exc.status in FAILURE_STATUSES
            raise
        finally:
            if not failed:
                await self.refund(value)

    def value_of(self, request: web.Request) -> str | None:
        """What this limiter counts for `request`, or None to leave the request uncounted."""
        if self.config.when is not None and _part_value(request, self.config.when) is None:
            return None
        values = []
        for part in self.config.parts:
            value = _part_value(request, part)
            if value is None:
                return None
            values.append(value)
        return "\x00".join(values)

    async def count(self, value: str) -> bool:
        """Count one hit for `value`; False when Redis was down (fail open).

        Raises:
            TooManyRequests: past the limit.
        """
        name = self.config.name
        try:
            hits, left_ms = await self.counter.hit(limiter_key(name, value), self.config.window_s * 1000)
        except RedisUnavailable as exc:
            self._failed_open(exc)
            return False
        if self._outage.down:
            self._outage.down = False
            log.info("rate limiter %s: Redis reachable again, limiting resumed", name)
        if hits > self.config.limit:
            REJECTED.labels(name).inc()
            retry_after_s = max(1, math.ceil(left_ms / 1000))
            msg = f"Too many attempts; try again in {retry_after_s} s."
            raise TooManyRequests(msg, retry_after_s=retry_after_s)
        return True

    async def refund(self, value: str) -> None:
        """Give back a hit held by a request that did not fail."""
        try:
            await self.counter.refund(limiter_key(self.config.name, value))
        except RedisUnavailable as exc:
            self._failed_open(exc)

    def _failed_open(self, exc: Exception) -> None:
        FAIL_OPEN.labels(self.config.name).inc()
        if not self._outage.down:
            self._outage.down = True
            log.warning("rate limiter %s: Redis unreachable, letting requests through (%s)", self.config.name, exc)


def limiter_key(name: str, value: str) -> str:
    """``turnstile:rl:<name>:<digest>``: the value is hashed, so no email is stored in Redis."""
    digest = hashlib.blake2b(value.encode(), digest_size=16).hexdigest()
    return f"{KEY_PREFIX}{name}:{digest}"


def counted_client(address: str) -> str:
    """The client a limiter counts: an IPv4 address, or the /64 network of an IPv6 one.

    An IPv6 host is given a whole /64 (RFC 6177: a site gets /48 to /56, each LAN a /64) and
    picks addresses in it at will (privacy addresses, RFC 8981); counted per address, one host
    could send as many clients. The /64 is what a host can change without its provider."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "" (a Unix socket) or what a proxy vouched for: counted as it is
    if ip.version == 6:
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return address


def _part_value(request: web.Request, part: str) -> str | None:
    if part == "client":
        return counted_client(client_address(request)) or "unknown"
    if part == "actor":
        actor = request.get(actor_key)
        return None if actor is None else str(actor.user_id)
    body = request.get(body_key)
    if body is None:
        # The rules gate sets the body before any non-guard step, so this is a pipeline that
        # names a body field without declaring a body model.
        msg = f"rate-limit keyed on {part} in a pipeline without a request body"
        raise InternalError(msg)
    value = body.get(part.removeprefix("body."))
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)

# One counter per app (the plugin's `setup_app` provides it), shared by every rate-limit step:
# keys carry the limiter's name, so two steps with the same name share their counts.
counter_key: Final[web.AppKey[WindowCounter]] = web.AppKey("rate_limit_counter")


def make_counter(app: web.Application) -> WindowCounter:
    """Counters in Redis (shared by every replica) when the core has a connection, else here."""
    redis = app[redis_key]
    return RedisWindowCounter(redis) if redis is not None else MemoryWindowCounter()


def build(config: RateLimitConfig, context: BuildContext) -> RateLimitStep:
    return RateLimitStep(config, context.app[counter_key])
