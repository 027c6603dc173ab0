"""Bounds on the connections one process holds: per client address (an IPv6 one by its /64), and
in all; a trusted proxy is counted in all only. Through `turnstile serve` and real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from app.connection_limits import ConnectionLimits, client_key
from app.proxies import TrustedProxies, parse_hop
from tests.app.test_cli import cli_env, free_port
from tests.services import ROOT


def test_an_ipv6_client_is_counted_by_its_64_and_an_ipv4_one_by_its_address() -> None:
    one, other = parse_hop("2001:db8:1:2::7"), parse_hop("2001:db8:1:2:ffff::1")
    assert one is not None
    assert other is not None
    assert client_key(one) == client_key(other) == "2001:db8:1:2::/64"
    four = parse_hop("::ffff:192.0.2.7")  # what a dual-stack socket reports for an IPv4 client
    assert four is not None
    assert client_key(four) == "192.0.2.7"


class FakeTransport:
    def __init__(self, peer: str) -> None:
        self.peer = (peer, 40000)
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_a_closed_connection_gives_its_place_back() -> None:
    limits = ConnectionLimits(total=10, per_client=2, trusted=TrustedProxies())
    handlers = [object() for _ in range(3)]
    transports = [FakeTransport("2001:db8::1"), FakeTransport("2001:db8::2"), FakeTransport("2001:db8::3")]
    for handler, transport in zip(handlers, transports, strict=True):
        limits.opened(handler, transport)  # type: ignore[arg-type]
    assert not transports[2].closed  # answered once aiohttp's handler has started, two loop turns on
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [t.closed for t in transports] == [False, False, True]  # one /64: two at most
    assert transports[2].written.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    limits.closed(handlers[2])  # type: ignore[arg-type]  # refused: never counted
    limits.closed(handlers[0])  # type: ignore[arg-type]
    again = FakeTransport("2001:db8::9")
    limits.opened(object(), again)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not again.closed


def serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    """`turnstile serve` on a free port; its log in tmp_path / "serve.log"."""
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=cli_env(tmp_path, TURNSTILE_DRAIN_SECONDS="1", **env), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("the server did not start")


@pytest.fixture
def stop() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def held(port: int, stop: ExitStack) -> socket.socket:
    """A connection that sends nothing (an idle client, or one trickling its headers)."""
    return stop.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))


def answer_to(sock: socket.socket, request: bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") -> bytes:
    sock.sendall(request)
    return sock.recv(65536)


def refused(sock: socket.socket) -> dict[str, Any]:
    """The 503 problem a refused connection gets before it sends anything, then the close."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), data
    assert b"Content-Type: application/problem+json" in head
    assert b"Retry-After: 1" in head
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == 503
    return problem


def test_one_client_cannot_take_every_connection(tmp_path: Path, stop: ExitStack) -> None:
    proc, port = serve(tmp_path, TURNSTILE_MAX_CONNECTIONS_PER_CLIENT="3")
    stop.callback(proc.wait, 20)
    stop.callback(proc.terminate)
    first = [held(port, stop) for _ in range(3)]
    assert "one client" in refused(held(port, stop))["detail"]
    for _ in range(20):  # refused again and again: one WARNING a minute, no traceback for each
        refused(held(port, stop))
    first[0].close()  # its place comes back
    time.sleep(0.2)
    assert answer_to(held(port, stop)).startswith(b"HTTP/1.1 200")
    assert answer_to(first[1]).startswith(b"HTTP/1.1 200")  # established ones are untouched
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log
    assert log.count("refused") == 1, log


def test_behind_a_trusted_proxy_only_the_bound_in_all_applies(tmp_path: Path, stop: ExitStack) -> None:
    proc, port = serve(tmp_path, TURNSTILE_MAX_CONNECTIONS_PER_CLIENT="2", TURNSTILE_MAX_CONNECTIONS="4",
                       TRUSTED_PROXIES="127.0.0.1/32")
    stop.callback(proc.wait, 20)
    stop.callback(proc.terminate)
    kept = [held(port, stop) for _ in range(4)]  # past the 2 per client: the proxy speaks for many
    assert "most connections (4)" in refused(held(port, stop))["detail"]
    metrics = answer_to(kept[0], b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while chunk := kept[0].recv(65536):
        metrics += chunk
    assert b'turnstile_connections_refused_total{limit="total"} 1.0' in metrics
    assert b"turnstile_connections_open 4.0" in metrics
