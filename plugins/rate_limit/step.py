"""The `rate-limit` step: counts requests per client or per body field; 429 past the limit.

When Redis is configured the counters live there (shared by every replica); otherwise in
this process. When Redis cannot be reached the step **fails open**: the request goes on, a
warning is logged once per outage and `turnstile_rate_limit_fail_open_total` counts it. A
limiter is defence in depth; failing closed would turn a Redis blip into an outage of login
for everyone, and argon2's cost still bounds how fast passwords can be tried meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import attrs
import orjson
from aiohttp import web
from prometheus_client import Counter

from app.clients.redis import RedisUnavailable
from app.errors import TooManyRequests
from app.keys import redis_key
from app.pipeline.body import FORM_CONTENT_TYPES
from app.pipeline.types import BuildContext, Handler
from plugins.rate_limit.config import RateLimitConfig
from plugins.rate_limit.counters import MemoryWindowCounter, RedisWindowCounter, WindowCounter

log = logging.getLogger("turnstile.rate_limit")

KEY_PREFIX = "turnstile:rl:"
# The OAuth2 password form (RFC 6749 §4.3.2) calls the login email `username`.
FORM_ALIASES = {"email": "username"}

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
        value = await self.value_of(request)
        if value is not None:
            await self.count(value)
        return await handler(request)

    async def value_of(self, request: web.Request) -> str | None:
        """What this limiter counts for `request`, or None to leave the request uncounted."""
        field = self.config.body_field
        if field is None:
            return client_address(request, trust_forwarded=self.config.trust_forwarded)
        return await body_value(request, field)

    async def count(self, value: str) -> None:
        """Count one hit for `value`. Raises TooManyRequests past the limit."""
        name = self.config.name
        try:
            hits, left_ms = await self.counter.hit(limiter_key(name, value), self.config.window_s * 1000)
        except RedisUnavailable as exc:
            FAIL_OPEN.labels(name).inc()
            if not self._outage.down:
                self._outage.down = True
                log.warning("rate limiter %s: Redis unreachable, letting requests through (%s)", name, exc)
            return
        if self._outage.down:
            self._outage.down = False
            log.info("rate limiter %s: Redis reachable again, limiting resumed", name)
        if hits > self.config.limit:
            REJECTED.labels(name).inc()
            retry_after_s = max(1, math.ceil(left_ms / 1000))
            msg = f"Too many attempts; try again in {retry_after_s} s."
            raise TooManyRequests(msg, retry_after_s=retry_after_s)


def limiter_key(name: str, value: str) -> str:
    """``turnstile:rl:<name>:<digest>``: the value is hashed, so no email is stored in Redis."""
    digest = hashlib.blake2b(value.encode(), digest_size=16).hexdigest()
    return f"{KEY_PREFIX}{name}:{digest}"


def client_address(request: web.Request, *, trust_forwarded: bool) -> str:
    if trust_forwarded:
        hops = [hop.strip() for line in request.headers.getall("X-Forwarded-For", []) for hop in line.split(",")]
        hops = [hop for hop in hops if hop]
        if hops:
            # The last hop is the one our own proxy added; earlier ones are the client's word.
            return hops[-1]
    return request.remote or "unknown"


async def body_value(request: web.Request, field: str) -> str | None:
    """`field` of the raw request body (JSON object or form), normalised; None when absent.

    The guard runs before body validation, so the body is read here (aiohttp caches it for
    the validation after); a body that does not parse is left to that validation to refuse.
    """
    content_type = request.content_type
    value: Any
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None
        value = data.get(field) if isinstance(data, dict) else None
    elif content_type in FORM_CONTENT_TYPES:
        try:
            form = await request.post()
        except ValueError:
            return None
        value = form.get(field)
        if value is None and field in FORM_ALIASES:
            value = form.get(FORM_ALIASES[field])
    else:
        return None
    if not isinstance(value, str):
        return None
    return value.strip().lower() or None


# One in-memory counter per app, shared by every rate-limit step: keys carry the limiter's
# name, so two steps with the same name share their counts, as they do in Redis.
memory_counter_key = web.AppKey("rate_limit_memory_counter", MemoryWindowCounter)


def _memory_counter(app: web.Application) -> MemoryWindowCounter:
    counter = app.get(memory_counter_key)
    if counter is None:
        counter = MemoryWindowCounter()
        if not app.frozen:  # routes are built before the app starts; a frozen app keeps its state
            app[memory_counter_key] = counter
    return counter


def build(config: RateLimitConfig, context: BuildContext) -> RateLimitStep:
    redis = context.app.get(redis_key)
    counter: WindowCounter = RedisWindowCounter(redis) if redis is not None else _memory_counter(context.app)
    return RateLimitStep(config, counter)
