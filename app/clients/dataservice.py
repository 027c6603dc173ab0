"""The data-service client: one pooled ``aiohttp.ClientSession`` per process (contract §7).

Every call carries the data service's credential (``Authorization: Bearer``, never logged),
connect and total timeouts; idempotent calls are retried on connection
errors and 502/503/504 with capped, fully jittered exponential backoff; all calls go through a
circuit breaker. Outcomes become the `ProblemError`s of contract §5. Details a client must not
see (URLs, exception text) go to the ``turnstile.dataservice`` log with the request id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol, Self, final

import aiohttp
import attrs
import orjson
from attrs.validators import ge, gt
from prometheus_client import Counter, Gauge, Histogram
from yarl import URL

from app.clients.breaker import CircuitBreaker, CircuitState, Permit
from app.clients.reachability import STATES, Reachability, State
from app.clients.retry import RETRYABLE_STATUSES, backoff_s, is_idempotent
from app.errors import BadGateway, Conflict, GatewayTimeout, NotFound, ProblemError, ServiceUnavailable
from app.outage import OutageLog

log = logging.getLogger("turnstile.dataservice")

Outcome = Literal[
    "ok", "not_found", "conflict", "client_error", "bad_gateway", "timeout", "unavailable", "circuit_open"
]
OUTCOMES: tuple[Outcome, ...] = (
    "ok", "not_found", "conflict", "client_error", "bad_gateway", "timeout", "unavailable", "circuit_open"
)

# Labelled by upstream: "data_service", or the name of an `[upstreams.NAME]` table.
CALLS = Counter(
    "turnstile_data_service_calls_total",
    "Upstream calls by final outcome (one per call, however many attempts it took)",
    ["upstream", "outcome"],
)
CALL_SECONDS = Histogram(
    "turnstile_data_service_call_seconds",
    "Duration of upstream calls, retries and backoff included (refused-by-circuit calls excluded)",
    ["upstream"],
)
RETRIES = Counter(
    "turnstile_data_service_retries_total", "Extra attempts made by idempotent upstream calls", ["upstream"]
)
CIRCUIT_STATE = Gauge(
    "turnstile_circuit_state", "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open", ["upstream"],
    multiprocess_mode="livemax",  # under --workers N: the worst worker's breaker
)
_GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
# Readiness follows it; a pod that is not ready gets no traffic, so no request metric shows a
# data service that refuses our token, and the breaker stays closed (a 401 is no failure):
# this is what an alert can watch (TurnstileUpstreamRefused).
REACHABILITY = Gauge(
    "turnstile_upstream_reachability",
    "What the latest call or probe of each upstream said: 1 for its state (unknown, ok, unreachable, refused), "
    "0 for the others",
    ["upstream", "state"],
    multiprocess_mode="livemax",  # under --workers N: a state any live worker is in
)

_MAX_DETAIL_CHARS = 200
# The calls a 409 can answer (a write meeting a uniqueness rule); a read or a delete cannot conflict.
_MAY_CONFLICT: Final = frozenset({"POST", "PUT", "PATCH"})


def _check_base_url(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        msg = f"base_url must be an absolute http(s) URL, got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class DataServiceOptions:
    """How to reach the data service and how hard to try.

    base_url: ``http(s)://host[:port][/prefix]``; request paths (``/api/v1/...``) are appended.
    connect_timeout_s: limit on opening one TCP (and TLS) connection.
    total_timeout_s: limit on one attempt, from sending to the last byte of the answer.
    retries: extra attempts for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) after a
        connection error or a 502/503/504; POST and PATCH are never retried. (aiohttp also
        resends an idempotent request once, by itself, when its connection drops mid-request.)
    backoff_base_s, backoff_max_s: the wait before retry n is uniform in
        ``[0, min(backoff_max_s, backoff_base_s * 2**n)]`` (full jitter).
    breaker_failures: consecutive failures (5xx, unparsable answers, timeouts, connection
        errors) that open the circuit; 404, 409 and other 4xx answers are not failures.
    breaker_cooldown_s: how long an open circuit refuses calls before one probe is let through;
        keep it well under 10 s, the contract's bound on recovery after the data service returns.
    pool_limit: most connections open to the data service at once.
    keepalive_s: how long an idle pooled connection is kept; below the servers' idle timeouts
        (aiohttp and nginx: 75 s) so we never reuse a connection the server is closing.
    token: sent as ``Authorization: Bearer <token>`` on every call (contract §7); None sends
        no credential. Kept out of ``repr`` and of every log line.
    """

    base_url: str = attrs.field(validator=_check_base_url)
    connect_timeout_s: float = attrs.field(default=1.0, validator=gt(0))
    total_timeout_s: float = attrs.field(default=5.0, validator=gt(0))
    retries: int = attrs.field(default=2, validator=ge(0))
    backoff_base_s: float = attrs.field(default=0.05, validator=ge(0))
    backoff_max_s: float = attrs.field(default=1.0, validator=ge(0))
    breaker_failures: int = attrs.field(default=5, validator=ge(1))
    breaker_cooldown_s: float = attrs.field(default=5.0, validator=ge(0))
    pool_limit: int = attrs.field(default=100, validator=ge(1))
    keepalive_s: float = attrs.field(default=15.0, validator=gt(0))
    token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class UpstreamReply:
    """A 2xx answer from the data service: its status and parsed JSON body (None for 204 and HEAD)."""

    status: int
    data: Any


class DataService(Protocol):
    """What a step needs from the data service."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        request_id: str | None = None,
        accept: Callable[[Any], bool] | None = None,
    ) -> UpstreamReply: ...

    async def ready(self) -> bool: ...


@attrs.frozen
class _Call:
    method: str
    path: str
    url: str
    body: bytes | None
    params: dict[str, str | int] | None
    headers: dict[str, str]
    request_id: str | None


# What a failed call says of its upstream (reachability): no answer in time, or a bad one.
_FAILED_STATES: Final[dict[str, State]] = {"timeout": "timeout", "bad_gateway": "failing"}


@attrs.frozen
class _Result:
    outcome: Outcome
    reply: UpstreamReply | None = None
    failure: bool = False  # counts against the circuit breaker
    retryable: bool = False
    refused: bool = False  # a 401 or 403: our credential is wrong, whatever the call
    sent: bool = False  # the call reached the upstream, which may have acted on it, but no usable answer came

    @property
    def reached(self) -> State:
        if self.refused:
            return "refused"
        if not self.failure:
            return "ok"
        return _FAILED_STATES.get(self.outcome, "unreachable")


@final
class DataServiceClient:
    """The data-service client. `start()` it in the running loop, `close()` it at shutdown."""

    def __init__(
        self, options: DataServiceOptions, *, name: str = "data_service", label: str = "the data service"
    ) -> None:
        """`name` labels metrics and log lines; `label` is how problem details name the service."""
        self.options = options
        self.name = name
        self.label = label
        self._calls = {outcome: CALLS.labels(upstream=name, outcome=outcome) for outcome in OUTCOMES}
        self._call_seconds = CALL_SECONDS.labels(upstream=name)
        self._retries = RETRIES.labels(upstream=name)
        self._base = options.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._breaker = CircuitBreaker(
            failure_threshold=options.breaker_failures,
            cooldown_s=options.breaker_cooldown_s,
            on_change=self._on_circuit_change,
        )
        self._gauge = CIRCUIT_STATE.labels(upstream=name)
        self._publish_state()
        self.reachability = Reachability(on_change=self._publish_reachability)
        # An outage is one WARNING and its end one INFO, not a line per call (or per probe).
        self._outage = OutageLog(log, name)
        self._refusal_logged_at: float | None = None

    async def start(self, base_url: str | None = None) -> None:
        """Create the pooled session; it belongs to the loop this runs in.

        `base_url` replaces the configured one: the embedded data service's address is only
        known once it listens, after steps already hold this client.
        """
        if base_url is not None:
            self._base = base_url.rstrip("/")
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=self.options.pool_limit, keepalive_timeout=self.options.keepalive_s)
        # `sock_connect`, not `connect`: aiohttp's `connect` also counts the wait for a free pooled
        # connection, which would turn a busy pool into 504s; `total` bounds that wait anyway.
        timeout = aiohttp.ClientTimeout(
            total=self.options.total_timeout_s, sock_connect=self.options.connect_timeout_s
        )
        headers = {"Accept": "application/json", "User-Agent": "turnstile"}
        if self.options.token is not None:
            headers["Authorization"] = f"Bearer {self.options.token}"
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def breaker_state(self) -> str:
        """``closed``, ``half_open`` (cool-down over, a probe may go) or ``open``."""
        return self._breaker.state.value

    async def ready(self) -> bool:
        """False while the circuit is open and cooling down; no network.

        True again once the cool-down is over: a readiness probe must put the instance back in
        rotation, or no request would ever come to be the probe that closes the circuit.
        """
        self._publish_state()
        return self._breaker.state is not CircuitState.OPEN

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        request_id: str | None = None,
        accept: Callable[[Any], bool] | None = None,
    ) -> UpstreamReply:
        """Call the data service once (idempotent methods: with retries) and map the outcome.

        Args:
            method: HTTP method. path: absolute path under `base_url`, e.g. ``/api/v1/users/7``.
            json: body to send as JSON (None: no body). params: query parameters.
            request_id: sent as ``X-Request-ID`` and put in every log line about this call.
            accept: whether a 2xx JSON answer is one the caller can use (it fits its model).
                One it cannot counts as ``bad_gateway`` and against the circuit breaker, as an
                answer that is not JSON does, and is still returned: the caller says why, and
                follows a write the data service saved.

        Raises:
            NotFound, Conflict: the data service said so (in this service's words, not its own);
                a 404 to a POST or a 409 to a read or a delete is no answer the call can have: 502.
            BadGateway: a 5xx, any other 4xx (our fault, logged), or a body that is not JSON.
            GatewayTimeout: no whole answer within ``total_timeout_s``.
            ServiceUnavailable: connection refused, reset or unresolvable, or the circuit is open;
                ``Retry-After`` says when to try again.
            RuntimeError: the client was not started.
        """
        if not path.startswith("/"):
            msg = f"path must start with '/', got {path!r}"
            raise ValueError(msg)
        call = _Call(
            method=method.upper(),
            path=path,
            url=self._base + path,
            body=None if json is None else orjson.dumps(json),
            params=None if params is None else dict(params),
            headers=_headers(request_id, has_body=json is not None),
            request_id=request_id,
        )
        session = self._require_session()
        started = time.perf_counter()
        result = await self._call(session, call, accept)
        self._calls[result.outcome].inc()
        if result.outcome != "circuit_open":
            self._call_seconds.observe(time.perf_counter() - started)
        self._publish_state()
        if result.reply is not None:
            return result.reply
        problem = self._problem(result)
        problem.outcome_unknown = result.sent
        raise problem

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            msg = f"{self.name} client is not started; await start() first"
            raise RuntimeError(msg)
        return self._session

    async def _call(
        self, session: aiohttp.ClientSession, call: _Call, accept: Callable[[Any], bool] | None
    ) -> _Result:
        retries = self.options.retries if is_idempotent(call.method) else 0
        last: _Result | None = None
        sent = False  # an earlier attempt may have been acted on, whatever the last one met
        for attempt in range(retries + 1):
            if last is not None:
                sent = sent or last.sent
                self._retries.inc()
                delay = backoff_s(attempt - 1, base_s=self.options.backoff_base_s, max_s=self.options.backoff_max_s)
                log.debug(  # counted in turnstile_data_service_retries_total; one line each would flood an outage
                    "%s: retrying %s %s in %.3f s (request_id=%s)",
                    self.name, call.method, call.path, delay, call.request_id, extra={"request_id": call.request_id},
                )
                await asyncio.sleep(delay)
            permit = self._breaker.acquire()
            if permit is None:
                # Refused mid-retry (the circuit opened meanwhile): the real cause is the last answer.
                return last if last is not None else _Result("circuit_open")
            last = await self._attempt_with_permit(session, call, permit, accept)
            if not last.retryable:
                break
        assert last is not None  # the loop runs at least once
        return attrs.evolve(last, sent=True) if sent and last.reply is None and not last.sent else last

    async def _attempt_with_permit(
        self, session: aiohttp.ClientSession, call: _Call, permit: Permit, accept: Callable[[Any], bool] | None
    ) -> _Result:
        try:
            result = await self._attempt(session, call)
            if result.reply is not None and result.reply.data is not None and accept is not None \
                    and not accept(result.reply.data):
                # Not a failure of the upstream's: it answered, with a record that does not fit
                # (one bad row must not open the circuit for every user, a caller reading it at will).
                result = _Result("bad_gateway", reply=result.reply)
        except BaseException:
            # Cancelled (the client went away) or a bug: no verdict, but free a probe's slot.
            self._breaker.release(permit)
            raise
        if result.failure:
            self._breaker.record_failure(permit)
        else:
            self._breaker.record_success(permit)
            if not result.refused:
                self._outage.ok()
        self.reachability.note(result.reached)
        return result

    async def probe(self, path: str) -> None:
        """Call `path` (a GET that answers 200 or 404) when no call gave a verdict lately, so the
        reachability (and a half-open circuit) follow the upstream while no request comes.

        Not counted with the calls: no client asked for it. An open circuit still cooling down
        is left alone; a half-open one takes the probe as its trial call.
        """
        if self._session is None or not self.reachability.probe_due():
            return
        permit = self._breaker.acquire()
        if permit is None:
            return
        call = _Call(method="GET", path=path, url=self._base + path, body=None, params=None, headers={},
                     request_id=None)
        await self._attempt_with_permit(self._session, call, permit, None)
        self._publish_state()

    async def _attempt(self, session: aiohttp.ClientSession, call: _Call) -> _Result:
        try:
            async with session.request(
                call.method,
                call.url,
                data=call.body,
                params=call.params,
                headers=call.headers,
                allow_redirects=False,  # the data service never redirects; following could turn a POST into a GET
            ) as resp:
                body = await resp.read()
        except TimeoutError as exc:  # before ClientConnectionError: ServerTimeoutError is both
            self._log_failure(call, "timed out", exc)
            return _Result("timeout", failure=True, sent=True)
        except aiohttp.ClientConnectionError as exc:  # refused, reset, DNS
            self._log_failure(call, "unreachable", exc)
            # Only a connection never made is a call never sent; one dropped later may have been acted on.
            sent = not isinstance(exc, aiohttp.ClientConnectorError)
            return _Result("unavailable", failure=True, retryable=True, sent=sent)
        except aiohttp.ClientError as exc:  # a malformed HTTP answer, a truncated body
            self._log_failure(call, "sent a broken answer", exc)
            return _Result("bad_gateway", failure=True, sent=True)
        return self._classify(call, resp.status, resp.content_type, body)

    def _classify(self, call: _Call, status: int, content_type: str, body: bytes) -> _Result:
        if 200 <= status < 300:
            return self._answered(call, status, content_type, body)
        if (status == 404 and call.method != "POST") or (status == 409 and call.method in _MAY_CONFLICT):
            # Its detail stays here (a data service may name a table, a constraint, a file in it):
            # the client gets this service's own words (contract §5).
            log.debug("%s answered %s %s with %d: %r", self.name, call.method, call.path, status,
                      _safe_detail(content_type, body), extra={"request_id": call.request_id})
            return _Result("not_found" if status == 404 else "conflict")
        if status in (404, 409):  # an answer this call cannot have (contract §7): a create is never "not found"
            self._log_status(call, status, "(an answer this call cannot have)", level=logging.ERROR)
            return _Result("bad_gateway")
        if status >= 500:
            self._outage.warning(f"{call.method} {call.url} (request_id={call.request_id})",
                                 _UpstreamStatus(f"answered {status}"))
            return _Result("bad_gateway", failure=True, retryable=status in RETRYABLE_STATUSES, sent=True)
        # Any other answer (400, 422, a redirect...): the data service refused what we sent, or
        # answered with something we never ask for. That is this service's fault, not the client's.
        if status in (401, 403):
            return self._refused(call, status)
        self._log_status(call, status, f"(upstream detail: {_safe_detail(content_type, body)!r})", level=logging.ERROR)
        return _Result("client_error" if 400 <= status < 500 else "bad_gateway")

    def _answered(self, call: _Call, status: int, content_type: str, body: bytes) -> _Result:
        # No body at all is "done, nothing to say" (as a 204 is): a 200 to a write with an empty
        # body. Whether the caller can do without one is the caller's to say (data-fetch reads
        # the record back).
        if status == 204 or call.method == "HEAD" or not body:
            return _Result("ok", reply=UpstreamReply(status, None))
        parsed, data = _parse_json(content_type, body)
        if not parsed:
            self._log_status(call, status, f"with a body that is not JSON ({content_type}, {len(body)} bytes)")
            return _Result("bad_gateway", failure=True, sent=True)
        return _Result("ok", reply=UpstreamReply(status, data))

    def _refused(self, call: _Call, status: int) -> _Result:
        """A 401 or 403: our credential (DATA_SERVICE_TOKEN) is refused, and every call will be
        until someone fixes the configuration. One ERROR a minute says so, not one per request."""
        now = time.monotonic()
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= _REFUSAL_LOG_EVERY_S:
            self._refusal_logged_at = now
            self._log_status(call, status, "(our credential is refused: check the token it was given; "
                             "logged once a minute)", level=logging.ERROR)
        return _Result("client_error", refused=True)

    def _problem(self, result: _Result) -> ProblemError:
        match result.outcome:
            case "not_found":
                return NotFound("not found")
            case "conflict":
                return Conflict("the change conflicts with a stored record")
            case "timeout":
                return GatewayTimeout(f"{self.label} did not answer in time")
            case "unavailable":
                return ServiceUnavailable(f"{self.label} is unreachable", retry_after_s=self._retry_after_s())
            case "circuit_open":
                return ServiceUnavailable(
                    f"{self.label} is failing; calls to it are paused", retry_after_s=self._retry_after_s()
                )
            case _:
                return BadGateway(f"{self.label} gave an answer this service could not use")

    def _retry_after_s(self) -> int:
        return max(1, math.ceil(self._breaker.retry_after_s()))

    def _log_failure(self, call: _Call, what: str, exc: BaseException) -> None:
        # The exception's text (OutageLog writes that, never the exception itself: a
        # ClientResponseError's repr holds the request's headers, and so the bearer token).
        # One WARNING per outage; the calls that fail during it are DEBUG lines (and counted).
        self._outage.warning(f"{call.method} {call.url} (request_id={call.request_id}): {what}", exc)

    def _log_status(self, call: _Call, status: int, note: str, *, level: int = logging.WARNING) -> None:
        # The URL without its query: `?email=` would put personal data in the log.
        log.log(
            level,
            "%s answered %s %s with %d %s (request_id=%s)",
            self.name, call.method, call.url, status, note, call.request_id, extra={"request_id": call.request_id},
        )

    def _on_circuit_change(self, old: CircuitState, new: CircuitState) -> None:
        # Opening from closed and closing are news; the open <-> half-open cycle of each cool-down
        # while the upstream stays down is not (the gauge shows it).
        if new is CircuitState.OPEN and old is CircuitState.CLOSED:
            level = logging.WARNING
        elif new is CircuitState.CLOSED:
            level = logging.INFO
        else:
            level = logging.DEBUG
        log.log(level, "circuit for %s: %s -> %s", self.name, old.value, new.value)
        self._gauge.set(_GAUGE_VALUE[new])

    def _publish_state(self) -> None:
        self._gauge.set(_GAUGE_VALUE[self._breaker.state])

    def _publish_reachability(self, current: State) -> None:
        for state in STATES:
            REACHABILITY.labels(self.name, state).set(1 if state == current else 0)


_REFUSAL_LOG_EVERY_S = 60.0


class _UpstreamStatus(Exception):
    """An upstream's error status, as the cause an outage line names."""


def _headers(request_id: str | None, *, has_body: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _parse_json(content_type: str, body: bytes) -> tuple[bool, Any]:
    """``(True, data)`` for a JSON body that parses, else ``(False, None)``."""
    if not _is_json(content_type):
        return False, None
    try:
        return True, orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None


def _safe_detail(content_type: str, body: bytes) -> str | None:
    """The upstream problem's ``detail`` when it is a short, printable string; else None."""
    parsed, data = _parse_json(content_type, body)
    if not parsed or not isinstance(data, dict):
        return None
    detail = data.get("detail")
    if isinstance(detail, str) and 0 < len(detail) <= _MAX_DETAIL_CHARS and detail.isprintable():
        return detail
    return None
