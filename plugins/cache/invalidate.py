"""The `cache-invalidate` step: tombstone cache keys once a write succeeded, or an event says so.

A plain delete loses a race: a read that missed before the write, and fetched the old record,
would store it after the delete for the full TTL. A unique tombstone (`markers.new_tombstone`,
for at most `tombstone_ttl_s`) makes that read's store fail, while a read that starts after it
may replace it; see `plugins.cache.markers` and `CacheInvalidateConfig`.
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
    Event,
    Handler,
    MessageHandler,
    SubscriptionContext,
    Template,
    template_placeholders,
)
from plugins.cache.backend import cache_backend_key
from plugins.cache.config import CacheInvalidateConfig
from plugins.cache.markers import new_tombstone
from plugins.cache.outage import BACKEND_ERRORS, outage_log

CACHE_INVALIDATIONS = Counter(
    "turnstile_cache_invalidations_total",
    "Cache invalidations by pipeline or subscription and result (ok, failed)",
    ["pipeline", "result"],
)


@final
@attrs.frozen
class CacheInvalidateStep:
    """After a 2xx answer, tombstone the keys. A backend failure is logged and counted; the write stands."""

    keys: tuple[Template, ...]
    cache: CacheBackend
    tombstone_ttl_s: int
    ok: Counter
    failed: Counter

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if 200 <= response.status < 300:
            try:
                await _tombstone(self.cache, [key.for_request(request) for key in self.keys], self.tombstone_ttl_s)
            except BACKEND_ERRORS as exc:
                self.failed.inc()
                outage_log.warning("invalidating", exc)
            else:
                self.ok.inc()
        return response


@final
@attrs.frozen
class CacheInvalidateMessageStep:
    """In a subscription: templates name fields of ``event.data``; a failure fails the message (retry)."""

    keys: tuple[Template, ...]
    cache: CacheBackend
    tombstone_ttl_s: int
    ok: Counter
    failed: Counter

    async def __call__(self, event: Event, handler: MessageHandler) -> None:
        await handler(event)
        try:
            keys = [key.for_data(event.data) for key in self.keys]
            await _tombstone(self.cache, keys, self.tombstone_ttl_s)
        except Exception:
            self.failed.inc()
            raise
        self.ok.inc()


async def _tombstone(cache: CacheBackend, keys: list[str], ttl_s: int) -> None:
    # One SET per key: there is no multi-key SET with a TTL, and a step names one or two keys.
    # A fresh tombstone per key and write, so a fill that saw an older one cannot replace it.
    for key in keys:
        await cache.set(key, new_tombstone(), ttl_s)


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
        failed=CACHE_INVALIDATIONS.labels(pipeline=name, result="failed"),
    )


def build_for_message(config: CacheInvalidateConfig, context: SubscriptionContext) -> CacheInvalidateMessageStep:
    name = context.subscription
    return CacheInvalidateMessageStep(
        keys=tuple(Template(key) for key in config.keys),
        cache=context.app[cache_backend_key],
        tombstone_ttl_s=config.tombstone_ttl_s,
        ok=CACHE_INVALIDATIONS.labels(pipeline=name, result="ok"),
        failed=CACHE_INVALIDATIONS.labels(pipeline=name, result="failed"),
    )
