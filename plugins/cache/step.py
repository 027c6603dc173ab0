"""The `cache` step: cache-aside around the rest of the chain (contract §8).

Headers on every answer: ``X-Cache: HIT|MISS|BYPASS`` and an RFC 9211 ``Cache-Status``:

- ``turnstile; hit``: answered from the cache (no ``ttl``: the remaining lifetime would cost a
  second round trip to Redis per hit).
- ``turnstile; fwd=uri-miss; fwd-status=200; stored``: no entry for the key; the rest of the
  chain answered and the answer was stored (``stored`` is absent when it was not: non-200/404
  statuses, a disabled ``not_found_ttl_s``, a failed write, or a key that changed since this
  request read it, e.g. ``cache-invalidate`` tombstoned it meanwhile). ``collapsed`` is added when
  this request waited for another request's identical fetch instead of making its own.
- ``turnstile; fwd=bypass; fwd-status=200; detail=unavailable``: the backend is down or slow;
  answered by the rest of the chain without the cache (``fail_open``).

A remembered 404 is a hit too: ``turnstile; hit`` on a problem+json 404. A tombstone (see
`plugins.cache.markers`) is a miss. A fill is conditional on what its read found: after an empty
key it is add-if-absent, so it never overwrites a tombstone written since (its answer may
predate that write), nor another instance's fill; after tombstone T it replaces T only if the
key still holds exactly T (the read began after that write, so its answer is fresh).

A hit answers the stored bytes without parsing them, so it carries no ``payload_key``; a
miss (and every collapsed waiter) carries the data-fetch step's payload.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, final

import attrs
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import Counter

from app import (
    BuildContext,
    CacheBackend,
    Handler,
    NotFound,
    OperationDoc,
    ProblemError,
    ServiceUnavailable,
    SingleFlight,
    Template,
    payload_key,
)
from plugins.cache.backend import KEY_PREFIX, cache_backend_key
from plugins.cache.config import CacheConfig
from plugins.cache.markers import NOT_FOUND_MARKER, is_tombstone
from plugins.cache.outage import BACKEND_ERRORS, outage_log
from plugins.cache.rollback import cache_key_heads_key

CACHE_REQUESTS = Counter(
    "turnstile_cache_requests_total", "Requests through a cache step by result", ["pipeline", "result"]
)

JSON: Final = "application/json"
XCache = Literal["MISS", "BYPASS"]  # what a forwarded answer's X-Cache says
HIT_HEADERS: Final = {"X-Cache": "HIT", "Cache-Status": "turnstile; hit"}
# Headers of the leader's answer that a collapsed follower must not copy.
_NOT_SHARED: Final = frozenset({"content-length", "x-request-id", "date", "server"})


@final
@attrs.frozen
class _Fetched:
    """What the rest of the chain answered for one (possibly shared) miss."""

    leader: web.Request
    response: web.StreamResponse | None
    problem: ProblemError | None
    body: bytes | None  # None: not shareable (a streamed answer, or a problem)
    shared_headers: tuple[tuple[str, str], ...]
    stored: bool


@final
@attrs.frozen
class CacheStep:
    config: CacheConfig
    key: Template
    cache: CacheBackend
    # Keyed by (cache key, what the read found): a fill's store depends on it, and a read that
    # found a tombstone must not take the answer of a fetch that may have begun before the write.
    flight: SingleFlight[tuple[str, bytes | None], _Fetched]
    hits: Counter
    misses: Counter
    bypasses: Counter

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = self.key.for_request(request)
        try:
            cached = await self.cache.get(key)
        except BACKEND_ERRORS as exc:
            outage_log.warning("reading", exc)
            self.bypasses.inc()
            if not self.config.fail_open:
                msg = "The cache is unavailable."
                raise ServiceUnavailable(msg) from exc
            return await self._forward(request, handler, key, None, x_cache="BYPASS", store=False)
        outage_log.ok()
        if cached is None or is_tombstone(cached) or (cached == NOT_FOUND_MARKER and not self.config.not_found_ttl_s):
            # A "not found" this step does not cache is no answer of its own: another configuration
            # (an earlier release cached 404s for 30 s) wrote it, and a user who registered since
            # would read their own record as missing. Replaced like a tombstone.
            self.misses.inc()
            return await self._forward(request, handler, key, cached, x_cache="MISS", store=True)
        self.hits.inc()
        if cached == NOT_FOUND_MARKER:
            raise NotFound("not found", headers=HIT_HEADERS)
        return web.Response(body=cached, content_type=JSON, headers=HIT_HEADERS)

    async def _forward(
        self, request: web.Request, handler: Handler, key: str, seen: bytes | None, *, x_cache: XCache, store: bool
    ) -> web.StreamResponse:
        """Run the rest of the chain once per key (and `seen`) at a time; every waiter gets its own answer.

        `seen`: what the cache held when this request read it, None or a tombstone.
        """
        fetched = await self.flight.do((key, seen), lambda: self._fetch(request, handler, key, seen, store=store))
        leader = fetched.leader is request
        if fetched.problem is not None:
            # Each waiter raises its own copy: the headers differ, and one exception object
            # raised in many tasks would share (and overwrite) one traceback.
            raise fetched.problem.with_headers({
                "X-Cache": x_cache,
                "Cache-Status": _status(fetched.problem.status, fetched.stored, leader=leader, x_cache=x_cache),
            })
        if leader:
            assert fetched.response is not None
            response = fetched.response
        elif fetched.body is None:
            response = await handler(request)  # the leader's answer cannot be replayed
        else:
            assert fetched.response is not None
            response = web.Response(
                status=fetched.response.status, body=fetched.body, headers=CIMultiDict(fetched.shared_headers)
            )
            if payload_key in fetched.response:
                response[payload_key] = fetched.response[payload_key]  # shared, read-only by contract
        response.headers["X-Cache"] = x_cache
        response.headers["Cache-Status"] = _status(response.status, fetched.stored, leader=leader, x_cache=x_cache)
        return response

    async def _fetch(
        self, request: web.Request, handler: Handler, key: str, seen: bytes | None, *, store: bool
    ) -> _Fetched:
        try:
            response = await handler(request)
        except ProblemError as problem:
            stored = False
            if store and problem.status == 404 and self.config.not_found_ttl_s > 0:
                stored = await self._store(key, seen, NOT_FOUND_MARKER, self.config.not_found_ttl_s)
            return _Fetched(request, None, problem, None, (), stored)
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes):
            return _Fetched(request, response, None, None, (), stored=False)
        stored = False
        if store and response.status == 200:
            stored = await self._store(key, seen, body, self.config.ttl_s)
        return _Fetched(request, response, None, body, _shareable(response.headers.items()), stored)

    async def _store(self, key: str, seen: bytes | None, value: bytes, ttl_s: int) -> bool:
        # Found nothing: add, never overwrite. A tombstone written since this request read means
        # its answer may predate the write (and another instance's fill is as fresh as this one).
        # Found tombstone T: replace T only. A newer tombstone means a newer write; a stored
        # answer means another fill, as fresh as this one, won.
        try:
            if seen is None:
                return await self.cache.add(key, value, ttl_s)
            return await self.cache.replace(key, seen, value, ttl_s)
        except BACKEND_ERRORS as exc:
            outage_log.warning("storing", exc)
            return False


def _shareable(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in headers if name.lower() not in _NOT_SHARED)


def _status(status: int, stored: bool, *, leader: bool, x_cache: XCache) -> str:
    if x_cache == "BYPASS":
        return f"turnstile; fwd=bypass; fwd-status={status}; detail=unavailable"
    value = f"turnstile; fwd=uri-miss; fwd-status={status}"
    if stored:
        value += "; stored"
    if not leader:
        value += "; collapsed"
    return value


def build(config: CacheConfig, context: BuildContext) -> CacheStep:
    pipeline = context.pipeline.name
    context.app[cache_key_heads_key].add(KEY_PREFIX + config.key)
    return CacheStep(
        config=config,
        key=Template(config.key),
        cache=context.app[cache_backend_key],
        flight=SingleFlight(),
        hits=CACHE_REQUESTS.labels(pipeline=pipeline, result="hit"),
        misses=CACHE_REQUESTS.labels(pipeline=pipeline, result="miss"),
        bypasses=CACHE_REQUESTS.labels(pipeline=pipeline, result="bypass"),
    )


def document(config: CacheConfig, doc: OperationDoc) -> None:
    doc.header(
        200,
        "X-Cache",
        "HIT (from the cache), MISS (fetched; stored unless the key changed meanwhile) or BYPASS (cache unavailable)",
    )
    doc.header(
        200, "Cache-Status", "RFC 9211, e.g. `turnstile; hit` or `turnstile; fwd=uri-miss; fwd-status=200; stored`"
    )
    # A 404 passes through the cache too, and says so with the same headers.
    doc.problem(404, "Not found", headers={
        "X-Cache": "MISS, BYPASS, or HIT when `not_found_ttl_s` keeps a 404",
        "Cache-Status": "RFC 9211, e.g. `turnstile; fwd=uri-miss; fwd-status=404`",
    })
