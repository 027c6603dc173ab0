"""The `cache-invalidate` step: tombstone cache keys once a write succeeded, or an event says so.

A plain delete loses a race: a read that missed before the write, and fetched the old record,
would store it after the delete for the full TTL. A unique tombstone (`markers.new_tombstone`,
for at most `tombstone_ttl_s`) makes that read's store fail, while a read that starts after it
may replace it; see `plugins.cache.markers` and `CacheInvalidateConfig`.

An invalidation is never dropped: when the cache backend is down it is deferred
(`CacheBackend.set_or_defer`), made as soon as the backend answers again, and until then the
key is read as unavailable, so this process serves it from upstream and never stale. In a
subscription, a deferred invalidation also fails the message, which waits for the backend and
is applied again once it is back (the deferral is this process's; the message is durable).
"""

from __future__ import annotations

from typing import final

import attrs
from aiohttp import web
from prometheus_client import Counter

from app import (
    RESERVED_PLACEHOLDERS,
    BuildContext,
    CacheBackend,
    CacheUnavailable,
    Event,
    Handler,
    MessageHandler,
    SubscriptionContext,
    Template,
    committed_key,
    template_placeholders,
)
from plugins.cache.backend import cache_backend_key
from plugins.cache.config import CacheInvalidateConfig
from plugins.cache.markers import new_tombstone

CACHE_INVALIDATIONS = Counter(
    "turnstile_cache_invalidations_total",
    "Cache invalidations by pipeline or subscription and result (ok, deferred until the backend answers, failed)",
    ["pipeline", "result"],
)


@final
@attrs.frozen
class CacheInvalidateStep:
    """After a 2xx answer or a committed write (`committed_key`, even when a later step failed),
    tombstone the keys, or defer it while the backend is down; the write stands."""

    keys: tuple[Template, ...]
    cache: CacheBackend
    tombstone_ttl_s: int
    ok: Counter
    deferred: Counter

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Exception:
            if committed_key in request:  # saved, though a later step failed: the cache must follow
                await self._invalidate(request)
            raise
        if 200 <= response.status < 300 or committed_key in request:
            await self._invalidate(request)
        return response

    async def _invalidate(self, request: web.Request) -> None:
        keys = [key.for_request(request) for key in self.keys]
        (self.ok if await _tombstone(self.cache, keys, self.tombstone_ttl_s) else self.deferred).inc()


@final
@attrs.frozen
class CacheInvalidateMessageStep:
    """In a subscription: templates name fields of ``event.data``; a failure fails the message (retry)."""

    keys: tuple[Template, ...]
    cache: CacheBackend
    tombstone_ttl_s: int
    ok: Counter
    deferred: Counter
    failed: Counter

    async def __call__(self, event: Event, handler: MessageHandler) -> None:
        await handler(event)
        try:
            keys = [key.for_data(event.data) for key in self.keys]
        except Exception:
            self.failed.inc()
            raise
        if not await _tombstone(self.cache, keys, self.tombstone_ttl_s):
            self.deferred.inc()
            msg = f"cache backend unavailable: invalidation of {', '.join(keys)} deferred"
            raise CacheUnavailable(msg)  # the message waits for the backend too
        self.ok.inc()


async def _tombstone(cache: CacheBackend, keys: list[str], ttl_s: int) -> bool:
    """Tombstone every key now (True), or defer those the backend cannot take now (False)."""
    # One SET per key: there is no multi-key SET with a TTL, and a step names one or two keys.
    # A fresh tombstone per key and write, so a fill that saw an older one cannot replace it.
    stored = True
    for key in keys:
        stored = await cache.set_or_defer(key, new_tombstone(), ttl_s) and stored
    return stored


def _check_placeholders(config: CacheInvalidateConfig, context: BuildContext) -> None:
    # The core checks only `str` template fields; a list of templates is checked here.
    params = set(context.pipeline.route.params) | RESERVED_PLACEHOLDERS
    for key in config.keys:
        for name in template_placeholders(key):
            if name not in params:
                msg = (
                    f"pipeline {context.pipeline.name!r} (cache-invalidate): keys: placeholder {{{name}}} "
                    f"names no route parameter (route has: {', '.join(context.pipeline.route.params) or 'none'})"
                )
                raise ValueError(msg)


def build(config: CacheInvalidateConfig, context: BuildContext) -> CacheInvalidateStep:
    _check_placeholders(config, context)
    name = context.pipeline.name
    return CacheInvalidateStep(
        keys=tuple(Template(key) for key in config.keys),
        cache=context.app[cache_backend_key],
        tombstone_ttl_s=config.tombstone_ttl_s,
        ok=CACHE_INVALIDATIONS.labels(pipeline=name, result="ok"),
        deferred=CACHE_INVALIDATIONS.labels(pipeline=name, result="deferred"),
    )


def build_for_message(config: CacheInvalidateConfig, context: SubscriptionContext) -> CacheInvalidateMessageStep:
    name = context.subscription
    return CacheInvalidateMessageStep(
        keys=tuple(Template(key) for key in config.keys),
        cache=context.app[cache_backend_key],
        tombstone_ttl_s=config.tombstone_ttl_s,
        ok=CACHE_INVALIDATIONS.labels(pipeline=name, result="ok"),
        deferred=CACHE_INVALIDATIONS.labels(pipeline=name, result="deferred"),
        failed=CACHE_INVALIDATIONS.labels(pipeline=name, result="failed"),
    )
