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

Concurrent misses of a key make one fetch across every instance (contract §8 with §9a), not one
per instance: the read that finds no answer also claims the key's fetch with a lease (one Redis
script, the same round trip as a plain read; `CacheBackend.read`), and the claimer fetches and
fills the key, giving the lease up in the same script as the fill. A reader that finds the lease
held waits: on the holder's outcome when it is a request of this process, else by reading (and
claiming) again after 2, 4, 8 ... ms until the key holds an answer or the lease is free. A
holder that gives up (its fetch failed, or left nothing to store) frees the lease for the next
claim; one that died leaves it until its time ends: one data-service call's. A read served from
this process's mirror that finds no answer claims in a second round trip. Leases live in keys
of their own (not mirrored: taking one pushes nothing to the instances), so the entries, their
tombstones and their conditional fills are as before, and older builds ignore the leases.

A hit answers the stored bytes without parsing them, so it carries no ``payload_key``; a
miss (and every waiter on this process's fetch) carries the data-fetch step's payload, an answer
another instance fetched does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable
from typing import Final, Literal, TypeGuard, final

import attrs
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import Counter

from app import (
    BuildContext,
    CacheBackend,
    Handler,
    LeaseClaim,
    NotFound,
    OperationDoc,
    ProblemError,
    ServiceUnavailable,
    SingleFlight,
    Template,
    UserNotFound,
    payload_key,
    settings_key,
)
from plugins.cache.backend import KEY_PREFIX, cache_backend_key
from plugins.cache.config import CacheConfig
from plugins.cache.leases import LocalLeases
from plugins.cache.markers import NOT_FOUND_MARKER, TOMBSTONE_PREFIX
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
# Waiting on another instance's fetch: the key is read again after 2, 4, 8 ... ms, then every 50.
_FIRST_WAIT_S: Final = 0.002
_LAST_WAIT_S: Final = 0.05


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
    seen: bytes | None = None  # what the key held when the fetch was claimed
    collapsed: bool = False  # an answer another fetch stored, not this request's own


@final
@attrs.frozen
class CacheStep:
    config: CacheConfig
    key: Template
    cache: CacheBackend
    # Keyed by (cache key, what the read found, the lease waited on): a fill's store depends on
    # what was found, and a read that found a tombstone must not take the answer of a fetch that
    # may have begun before the write.
    flight: SingleFlight[tuple[str, bytes | None, bytes | None], _Fetched]
    leases: LocalLeases[_Fetched]
    claim: LeaseClaim
    hits: Counter
    misses: Counter
    bypasses: Counter

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = self.key.for_request(request)
        try:
            read = await self.cache.read(key, self.claim)
        except BACKEND_ERRORS as exc:
            outage_log.warning("reading", exc)
            self.bypasses.inc()
            if not self.config.fail_open:
                msg = "The cache is unavailable."
                raise ServiceUnavailable(msg) from exc
            # b"": a flight of its own, which neither claims nor stores
            fetched = await self.flight.do((key, None, b""), lambda: self._fetch(request, handler, key, None))
            return await self._answer(request, handler, fetched, x_cache="BYPASS")
        outage_log.ok()
        cached = read.value
        if self._answers(cached):
            self.hits.inc()
            if cached == NOT_FOUND_MARKER:
                raise NotFound("not found", headers=HIT_HEADERS)
            return web.Response(body=cached, content_type=JSON, headers=HIT_HEADERS)
        self.misses.inc()
        if read.lease is not None:
            fetched = await self.leases.run(
                read.lease, functools.partial(self._fetch, request, handler, key, cached, lease=read.lease)
            )
        else:  # another's fetch, or (this process's copy was read) nobody's yet
            fetched = await self.flight.do(
                (key, cached, read.holder), lambda: self._await_fetch(request, handler, key, cached, read.holder)
            )
        return await self._answer(request, handler, fetched, x_cache="MISS")

    def _answers(self, cached: bytes | None) -> TypeGuard[bytes]:
        """Whether `cached` is an answer: not nothing, a tombstone, nor a "not found" this step
        does not cache (another configuration wrote it: an earlier release cached 404s for 30 s,
        and a user who registered since would read their own record as missing; it is replaced
        like a tombstone)."""
        return self.claim.answers(cached)

    async def _await_fetch(
        self, request: web.Request, handler: Handler, key: str, seen: bytes | None, holder: bytes | None
    ) -> _Fetched:
        """The answer of the fetch under `holder`'s lease (None: nobody's yet), or of this one's
        once it claims the key in turn; without one after two leases' time, its own, not stored."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 2 * self.claim.ttl_s
        wait_s = _FIRST_WAIT_S
        while loop.time() < give_up:
            if holder is not None:
                local = self.leases.outcome(holder)
                if local is not None:  # a fetch of this process: its outcome, unless a write came between
                    try:
                        fetched = await asyncio.shield(local)
                    except asyncio.CancelledError:
                        if not local.cancelled():
                            raise  # this wait itself was cancelled
                    else:
                        if fetched.seen == seen:
                            return fetched
                else:
                    await asyncio.sleep(wait_s)
                    wait_s = min(wait_s * 2, _LAST_WAIT_S)
            try:
                read = await self.cache.read(key, self.claim, fresh=True)
            except BACKEND_ERRORS as exc:
                outage_log.warning("reading", exc)
                break
            if self._answers(read.value):
                return self._filled(request, read.value)
            if read.lease is not None:
                return await self.leases.run(
                    read.lease, functools.partial(self._fetch, request, handler, key, read.value, lease=read.lease)
                )
            seen, holder = read.value, read.holder
        return await self._fetch(request, handler, key, seen)

    def _filled(self, request: web.Request, value: bytes) -> _Fetched:
        """The answer another fetch (of another instance) stored while this request waited."""
        if value == NOT_FOUND_MARKER:
            return _Fetched(request, None, NotFound("not found"), None, (), stored=True, collapsed=True)
        response = web.Response(body=value, content_type=JSON)
        return _Fetched(request, response, None, value, _shareable(response.headers.items()), stored=True,
                        collapsed=True)

    async def _answer(
        self, request: web.Request, handler: Handler, fetched: _Fetched, *, x_cache: XCache
    ) -> web.StreamResponse:
        """This request's own answer from a (possibly shared) fetch's."""
        leader = fetched.leader is request and not fetched.collapsed
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
        self, request: web.Request, handler: Handler, key: str, seen: bytes | None, *, lease: bytes | None = None
    ) -> _Fetched:
        """The rest of the chain's answer; stored when this fetch holds `lease` (None: not stored),
        and the lease given up either way."""
        released = lease is None
        try:
            try:
                response = await handler(request)
            except ProblemError as problem:
                stored = False
                # A user's missing record is not remembered: the auth step answers it 401 to that
                # user and 404 to anyone else, which a remembered "not found" could not tell apart.
                if lease is not None and problem.status == 404 and self.config.not_found_ttl_s > 0 \
                        and not isinstance(problem, UserNotFound):
                    stored = released = await self._store(key, seen, NOT_FOUND_MARKER,
                                                          self.config.not_found_ttl_s, lease)
                return _Fetched(request, None, problem, None, (), stored, seen)
            body = response.body if isinstance(response, web.Response) else None
            if not isinstance(body, bytes):
                return _Fetched(request, response, None, None, (), stored=False, seen=seen)
            stored = False
            if lease is not None and response.status == 200:
                stored = await self._store(key, seen, body, self.config.ttl_s, lease)
                released = True  # by the fill, stored or not (unless Redis failed: then by its time)
            return _Fetched(request, response, None, body, _shareable(response.headers.items()), stored, seen)
        finally:
            if not released:
                assert lease is not None
                with contextlib.suppress(*BACKEND_ERRORS):
                    await self.cache.release(key, lease)

    async def _store(self, key: str, seen: bytes | None, value: bytes, ttl_s: int, lease: bytes) -> bool:
        # Found nothing: add, never overwrite. A tombstone written since this request read means
        # its answer may predate the write (and another instance's fill is as fresh as this one).
        # Found tombstone T: replace T only. A newer tombstone means a newer write; a stored
        # answer means another fill, as fresh as this one, won. The lease goes in the same step.
        try:
            return await self.cache.fill(key, seen, value, ttl_s, lease)
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
    leases: LocalLeases[_Fetched] = LocalLeases()
    return CacheStep(
        config=config,
        key=Template(config.key),
        cache=context.app[cache_backend_key],
        flight=SingleFlight(),
        leases=leases,
        # A lease lasts one data-service call at most: a holder that died delays the others by that.
        claim=LeaseClaim(new_lease=leases.reserve, lost=leases.forget,
                         ttl_s=context.app[settings_key].data_service_timeout_s,
                         not_answers=TOMBSTONE_PREFIX,
                         not_answer=None if config.not_found_ttl_s else NOT_FOUND_MARKER),
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
