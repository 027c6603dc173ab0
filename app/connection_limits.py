"""How many connections one process holds, in all and from one client.

aiohttp accepts every connection it is offered, and an idle or slow one is kept until the
keep-alive timeout (75 s). One client that opened connections as fast as it could used up the
process's file descriptors: accept() then failed for everyone, the kubelet's probes included,
and the pod was unreachable for as long as the client kept reopening them. Two bounds stop it:

- per client (its address; an IPv6 client by its /64, which one host is commonly given), so one
  client cannot take the others' share; the trusted proxies (TRUSTED_PROXIES) are exempt, since
  every client behind them shares their address and their own limits apply;
- in all, below the file-descriptor limit, so the process keeps the descriptors its own clients
  (Redis, RabbitMQ, the data service) and files need.

A connection past either bound is answered a 503 problem at once and closed, before it sends
anything; established connections are untouched.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from typing import Any, Final

import orjson
from aiohttp import web
from prometheus_client import Counter, Gauge

from app.errors import PROBLEM_CONTENT_TYPE, ServiceUnavailable
from app.middlewares.request_id import REQUEST_ID_HEADER, accept_or_generate
from app.proxies import IPAddress, TrustedProxies, parse_hop

log = logging.getLogger("turnstile.connections")

# Descriptors kept for the process itself: its clients' pools, the listener, files, the logs.
RESERVED_DESCRIPTORS: Final = 256
# The default bound in all: also what ~5 KiB of memory per held connection stays reasonable at.
DEFAULT_MAX_CONNECTIONS: Final = 10_000
REFUSAL_LOG_EVERY_S: Final = 60.0

OPEN = Gauge("turnstile_connections_open", "Client connections the process holds", multiprocess_mode="livesum")
REFUSED = Counter(
    "turnstile_connections_refused_total",
    "Connections answered 503 and closed at once: past the bound in all, or from one client",
    ["limit"],
)
for _limit in ("total", "client"):
    REFUSED.labels(limit=_limit)


def default_max_connections() -> int:
    """The bound in all when none is set: under the process's descriptor limit, with room kept."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, min(DEFAULT_MAX_CONNECTIONS, soft - RESERVED_DESCRIPTORS))


def client_address_of(peer: Any) -> IPAddress | None:
    """The address a transport's ``peername`` names; None for a socket with none (a Unix one)."""
    if not isinstance(peer, tuple) or not peer:
        return None
    return parse_hop(str(peer[0]))


def client_key(address: IPAddress) -> str:
    """Whom a connection counts against: its address, an IPv6 one by its /64."""
    if address.version == 6:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def _answer_and_close(transport: Any, answer: bytes) -> None:
    if not transport.is_closing():
        transport.write(answer)
        transport.close()


def _refusal(detail: str) -> bytes:
    request_id = accept_or_generate(None)
    body = orjson.dumps(ServiceUnavailable(detail).body(request_id))
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\n{REQUEST_ID_HEADER}: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionLimits:
    """Counts a server's connections as they open and close; refuses those past a bound."""

    def __init__(self, *, total: int, per_client: int, trusted: TrustedProxies) -> None:
        self.total = total
        self.per_client = per_client  # 0: no bound per client
        self.trusted = trusted
        self._open: dict[web.RequestHandler, str | None] = {}
        self._per_client: dict[str, int] = {}
        self._last_logged = -REFUSAL_LOG_EVERY_S
        self._refused_since_log = 0

    def install(self, server: web.Server) -> None:
        """Watch `server`'s connections (its own bookkeeping goes on as before)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: web.RequestHandler, transport: Any) -> None:
            made(handler, transport)
            self.opened(handler, transport)

        def connection_lost(handler: web.RequestHandler, exc: BaseException | None = None) -> None:
            self.closed(handler)
            lost(handler, exc)

        # The protocol calls its manager's methods: instance attributes are found first.
        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def opened(self, handler: web.RequestHandler, transport: Any) -> None:
        address = client_address_of(transport.get_extra_info("peername"))
        # Not counted per client: a trusted proxy speaks for many clients.
        key = None if address is None or self.trusted.trusts(address) else client_key(address)
        if len(self._open) >= self.total:
            self._refuse(transport, "total", f"This instance holds its most connections ({self.total}).")
            return
        if key is not None and self.per_client and self._per_client.get(key, 0) >= self.per_client:
            self._refuse(transport, "client", f"Too many connections from one client (at most {self.per_client}).")
            return
        self._open[handler] = key
        if key is not None:
            self._per_client[key] = self._per_client.get(key, 0) + 1
        OPEN.inc()

    def closed(self, handler: web.RequestHandler) -> None:
        if handler not in self._open:
            return  # refused: never counted
        key = self._open.pop(handler)
        OPEN.dec()
        if key is not None:
            left = self._per_client[key] - 1
            if left:
                self._per_client[key] = left
            else:
                del self._per_client[key]

    def _refuse(self, transport: Any, limit: str, detail: str) -> None:
        REFUSED.labels(limit=limit).inc()
        # Not here: aiohttp's handler is still being set up, and a transport closed now ends it
        # before its task starts (an AssertionError traceback per refusal, any client's to send).
        # Two loop turns later the handler waits for its first request, and a close ends it cleanly.
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, _answer_and_close, transport, _refusal(detail))
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_logged >= REFUSAL_LOG_EVERY_S:
            # One line a minute at most: a flood of refusals must not become a flood of lines.
            log.warning("refused %d connection(s) in the last minute or so (%s); %d open, %d from the "
                        "busiest client", self._refused_since_log, detail, len(self._open),
                        max(self._per_client.values(), default=0))
            self._last_logged = now
            self._refused_since_log = 0
