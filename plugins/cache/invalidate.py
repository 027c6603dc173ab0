"""The `cache-invalidate` step: tombstone cache keys once a write succeeded, or an event says so.

A plain delete loses a race: a read that missed before the write, and fetched the old record,
would store it after the delete for the full TTL. A unique tombstone (`markers.new_tombstone`,
for at most `tombstone_ttl_s`) makes that read's store fail, while a read that starts after it
may replace it; see `plugins.cache.markers` and `CacheInvalidateConfig`.

The subscriptions that tombstone on `user.updated` skip the keys this process already tombstoned
after the very write the event announces (`plugins.cache.made`): a second and third tombstone
for one write close no race.

An invalidation is never dropped: when the cache backend is down it is deferred
(`CacheBackend.set_or_defer`), made as soon as the backend answers again, and until then the
key is read as unavailable, so this process serves it from upstream and never stale. In a
subscription, a deferred invalidation also fails the message, which waits for the backend and
is applied again once it is back (the deferral is this process's; the message is durable).
"""

from __future__ import annotations

import asyncio
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
    RollbackWatch,
    SubscriptionContext,
    Template,
    committed_key,
    complete_despite_cancellation,
    event_id_key,
    outcome_unknown_key,
    redis_key,
    template_placeholders,
)
from plugins.cache.backend import cache_backend_key
from plugins.cache.config import CacheInvalidateConfig
from plugins.cache.made import MadeInvalidations, made_invalidations_key
from plugins.cache.markers import new_tombstone

CACHE_INVALIDATIONS = Counter(
    "turnstile_cache_invalidations_total",
    "Cache invalidations by pipeline or subscription and result (ok, deferred until the backend answers, failed,"
    " skipped: this process tombstoned the keys right after the write the event announces)",
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
    made: MadeInvalidations
    rollbacks: RollbackWatch | None
    ok: Counter
    deferred: Counter

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            if committed_key in request:  # saved, then cancelled (see `complete_despite_cancellation`)
                await complete_despite_cancellation(self._invalidate(request))
            raise
        except Exception:
            # Saved though a later step failed, or perhaps saved (the answer was lost): the
            # cache must not keep what may be the old record.
            if committed_key in request or outcome_unknown_key in request:
                await self._invalidate(request)
            raise
        if 200 <= response.status < 300 or committed_key in request:
            await self._invalidate(request)
        return response

    async def _invalidate(self, request: web.Request) -> None:
        keys = [key.for_request(request) for key in self.keys]
        stored = await _tombstone(self.cache, keys, self.tombstone_ttl_s, self.rollbacks)
        if (event_id := request.get(event_id_key)) is not None:
            self.made.record(event_id, stored)
        (self.ok if len(stored) == len(keys) else self.deferred).inc()


@final
@attrs.frozen
class CacheInvalidateMessageStep:
    """In a subscription: templates name fields of ``event.data``; a failure fails the message (retry)."""

    keys: tuple[Template, ...]
    cache: CacheBackend
    tombstone_ttl_s: int
    made: MadeInvalidations
    rollbacks: RollbackWatch | None
    ok: Counter
    deferred: Counter
    failed: Counter
    skipped: Counter

    async def __call__(self, event: Event, handler: MessageHandler) -> None:
        await handler(event)
        try:
            keys = [key.for_data(event.data) for key in self.keys]
        except Exception:
            self.failed.inc()
            raise
        if made := self.made.made(event.id):
            keys = [key for key in keys if key not in made]
            if not keys:
                self.skipped.inc()
                return
        if len(await _tombstone(self.cache, keys, self.tombstone_ttl_s, self.rollbacks)) < len(keys):
            self.deferred.inc()
            msg = f"cache backend unavailable: invalidation of {', '.join(keys)} deferred"
            raise CacheUnavailable(msg)  # the message waits for the backend too
        self.ok.inc()


async def _tombstone(cache: CacheBackend, keys: list[str], ttl_s: int, rollbacks: RollbackWatch | None) -> list[str]:
    """Tombstone every key now, or defer those the backend cannot take now; the keys stored now."""
    # One SET per key: there is no multi-key SET with a TTL, and a step names one or two keys.
    # A fresh tombstone per key and write, so a fill that saw an older one cannot replace it.
    stored = [key for key in keys if await cache.set_or_defer(key, new_tombstone(), ttl_s)]
    if stored and rollbacks is not None:
        # Counted after the tombstones, never before: a Redis that loses them loses the count
        # too, and the rollback is noticed (the cache emptied, see plugins/cache/rollback.py).
        await rollbacks.counted()
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


def _rollbacks(app: web.Application) -> RollbackWatch | None:
    redis = app.get(redis_key)  # absent in an app made for a step alone
    return None if redis is None else redis.rollbacks


def build(config: CacheInvalidateConfig, context: BuildContext) -> CacheInvalidateStep:
    _check_placeholders(config, context)
    name = context.pipeline.name
    return CacheInvalidateStep(
        keys=tuple(Template(key) for key in config.keys),
        cache=context.app[cache_backend_key],
        tombstone_ttl_s=config.tombstone_ttl_s,
        made=context.app[made_invalidations_key],
        rollbacks=_rollbacks(context.app),
        ok=CACHE_INVALIDATIONS.labels(pipeline=name, result="ok"),
        deferred=CACHE_INVALIDATIONS.labels(pipeline=name, result="deferred"),
    )


def build_for_message(config: CacheInvalidateConfig, context: SubscriptionContext) -> CacheInvalidateMessageStep:
    name = context.subscription
    return CacheInvalidateMessageStep(
        keys=tuple(Template(key) for key in config.keys),
        cache=context.app[cache_backend_key],
        tombstone_ttl_s=config.tombstone_ttl_s,
        made=context.app[made_invalidations_key],
        rollbacks=_rollbacks(context.app),
        ok=CACHE_INVALIDATIONS.labels(pipeline=name, result="ok"),
        deferred=CACHE_INVALIDATIONS.labels(pipeline=name, result="deferred"),
        failed=CACHE_INVALIDATIONS.labels(pipeline=name, result="failed"),
        skipped=CACHE_INVALIDATIONS.labels(pipeline=name, result="skipped"),
    )
