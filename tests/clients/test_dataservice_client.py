"""The data-service client against real HTTP servers: a small fake data service per test."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from pytest_aiohttp import AiohttpServer

from app.clients.dataservice import DataServiceClient, DataServiceOptions, UpstreamReply
from app.errors import BadGateway, Conflict, GatewayTimeout, NotFound, ServiceUnavailable

ClientFactory = Callable[..., Awaitable[DataServiceClient]]


def problem(status: int, detail: Any) -> web.Response:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json")


def answer(make: Callable[[], web.Response]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        return make()

    return handler


class FakeDataService:
    """Just enough of the data service to provoke every outcome; counts hits per method and path."""

    def __init__(self) -> None:
        self.hits: Counter[tuple[str, str]] = Counter()
        self.healthy = True
        self.unavailable_times = 0  # answer 503 this many times, then normally
        self.gate = asyncio.Event()  # cleared: user requests wait at the gate
        self.gate.set()
        self.at_gate = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.count])
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/users/{id}", self.user)
        app.router.add_post("/users/", self.user)
        app.router.add_get("/empty", answer(lambda: web.Response(status=204)))
        app.router.add_get("/missing", answer(lambda: problem(404, "user 7 does not exist")))
        app.router.add_get("/missing-odd", answer(lambda: problem(404, "x" * 500)))
        app.router.add_get("/missing-bare", answer(lambda: web.Response(status=404, text="no")))
        app.router.add_get("/missing-secret", answer(lambda: problem(404, "internal /srv/secret.py line 3")))
        app.router.add_route("*", "/conflicts", answer(lambda: problem(409, "unique constraint users_email_key")))
        app.router.add_post("/missing", answer(lambda: problem(404, "no such table")))
        app.router.add_post("/taken", answer(lambda: problem(409, "email already registered")))
        app.router.add_post("/taken-odd", answer(lambda: problem(409, {"nested": "thing"})))
        app.router.add_post("/invalid", answer(lambda: problem(422, "password_hash is required")))
        app.router.add_get("/boom", answer(lambda: web.Response(status=500, text="Traceback ...")))
        app.router.add_get("/text", answer(lambda: web.Response(text="<html>hello</html>")))
        app.router.add_get("/broken-json", answer(lambda: web.Response(text="{not", content_type="application/json")))
        app.router.add_get("/slow", self.slow)
        return app

    @web.middleware
    async def count(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.hits[request.method, request.path] += 1
        return await handler(request)

    async def echo(self, request: web.Request) -> web.Response:
        raw = await request.read()
        return web.json_response({
            "method": request.method,
            "request_id": request.headers.get("X-Request-ID"),
            "content_type": request.headers.get("Content-Type"),
            "body": orjson.loads(raw) if raw else None,
            "query": dict(request.query),
        })

    async def user(self, request: web.Request) -> web.Response:
        self.at_gate.set()
        await self.gate.wait()
        if not self.healthy:
            return web.Response(status=500)
        if self.unavailable_times > 0:
            self.unavailable_times -= 1
            return web.Response(status=503)
        return web.json_response({"id": int(request.match_info.get("id", "1"))})

    async def slow(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response({})


@pytest.fixture
def fake() -> FakeDataService:
    return FakeDataService()


@pytest.fixture
async def base_url(aiohttp_server: AiohttpServer, fake: FakeDataService) -> str:
    server = await aiohttp_server(fake.app())
    return str(server.make_url("/"))


@pytest.fixture
async def make_client(base_url: str) -> AsyncIterator[ClientFactory]:
    clients: list[DataServiceClient] = []

    async def make(url: str = base_url, **overrides: Any) -> DataServiceClient:
        settings: dict[str, Any] = {
            "backoff_base_s": 0.001, "backoff_max_s": 0.002, "total_timeout_s": 2.0, **overrides,
        }
        client = DataServiceClient(DataServiceOptions(base_url=url, **settings), name=f"test-{uuid.uuid4().hex[:8]}")
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def calls(client: DataServiceClient, outcome: str) -> float:
    """Calls counted for `client`'s upstream label (each test client has a name of its own)."""
    labels = {"upstream": client.name, "outcome": outcome}
    return REGISTRY.get_sample_value("turnstile_data_service_calls_total", labels) or 0.0


def circuit_gauge(client: DataServiceClient) -> float | None:
    return REGISTRY.get_sample_value("turnstile_circuit_state", {"upstream": client.name})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_success_sends_json_and_forwards_the_request_id(make_client: ClientFactory) -> None:
    client = await make_client()
    reply = await client.request(
        "POST", "/echo", json={"email": "a@example.com"}, params={"limit": 5}, request_id="req-1.A_b"
    )
    assert reply == UpstreamReply(200, {
        "method": "POST",
        "request_id": "req-1.A_b",
        "content_type": "application/json",
        "body": {"email": "a@example.com"},
        "query": {"limit": "5"},
    })


async def test_get_without_body_or_request_id_sends_neither(make_client: ClientFactory) -> None:
    client = await make_client()
    reply = await client.request("get", "/echo")
    assert reply.data["request_id"] is None
    assert reply.data["content_type"] is None
    assert reply.data["body"] is None


async def test_204_gives_no_data(make_client: ClientFactory) -> None:
    client = await make_client()
    assert await client.request("GET", "/empty") == UpstreamReply(204, None)


@pytest.mark.parametrize("path", ["/missing", "/missing-odd", "/missing-bare", "/missing-secret"])
async def test_404_becomes_not_found_in_this_services_words(make_client: ClientFactory, path: str) -> None:
    # The upstream's detail may name a file, a table, a constraint: it never reaches a client.
    client = await make_client()
    with pytest.raises(NotFound) as caught:
        await client.request("GET", path)
    assert caught.value.detail == "not found"


@pytest.mark.parametrize("path", ["/taken", "/taken-odd"])
async def test_409_becomes_conflict_in_this_services_words(make_client: ClientFactory, path: str) -> None:
    client = await make_client()
    with pytest.raises(Conflict) as caught:
        await client.request("POST", path, json={})
    assert caught.value.detail == "the change conflicts with a stored record"


@pytest.mark.parametrize(("method", "path"), [("GET", "/conflicts"), ("DELETE", "/conflicts"), ("POST", "/missing")])
async def test_a_404_or_409_a_call_cannot_have_is_a_bad_gateway(
    make_client: ClientFactory, method: str, path: str
) -> None:
    # A read or a delete never conflicts, a create is never "not found" (contract §7).
    client = await make_client()
    with pytest.raises(BadGateway):
        await client.request(method, path, json={} if method == "POST" else None)


async def test_other_4xx_is_our_fault_a_bad_gateway_and_logged(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client()
    before = calls(client, "client_error")
    with pytest.raises(BadGateway) as caught:
        await client.request("POST", "/invalid", json={}, request_id="rid-422")
    assert "422" not in caught.value.detail
    assert calls(client, "client_error") == before + 1
    assert client.breaker_state == "closed"
    record = next(r for r in caplog.records if r.name == "turnstile.dataservice")
    assert "422" in record.getMessage()
    assert "rid-422" in record.getMessage()


async def test_5xx_becomes_bad_gateway_without_internals(make_client: ClientFactory) -> None:
    client = await make_client()
    with pytest.raises(BadGateway) as caught:
        await client.request("GET", "/boom")
    assert "Traceback" not in caught.value.detail
    assert "127.0.0.1" not in caught.value.detail
    assert caught.value.outcome_unknown  # it was reached: a write may have been applied
    assert client.reachability.state == "failing"  # it answers, badly: not a network matter


@pytest.mark.parametrize("path", ["/text", "/broken-json"])
async def test_a_body_that_is_not_json_is_a_bad_gateway(make_client: ClientFactory, path: str) -> None:
    client = await make_client()
    with pytest.raises(BadGateway):
        await client.request("GET", path)


async def test_an_answer_that_is_not_http_is_a_bad_gateway(make_client: ClientFactory) -> None:
    async def garbage(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await make_client(f"http://127.0.0.1:{port}", retries=0)
        with pytest.raises(BadGateway):
            await client.request("GET", "/x")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_reset_connection_is_unavailable_and_get_is_retried(make_client: ClientFactory) -> None:
    accepted = 0

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await make_client(f"http://127.0.0.1:{port}", retries=2)
        with pytest.raises(ServiceUnavailable) as caught:
            await client.request("GET", "/users/1")
        assert caught.value.outcome_unknown  # dropped once connected: it may have been acted on
        # aiohttp itself resends an idempotent request once when its connection drops: 2 per attempt
        assert 3 <= accepted <= 6
    finally:
        server.close()
        await server.wait_closed()


async def test_slow_answer_beyond_the_total_timeout_is_a_gateway_timeout(
    make_client: ClientFactory, fake: FakeDataService
) -> None:
    client = await make_client(total_timeout_s=0.2)
    before = calls(client, "timeout")
    with pytest.raises(GatewayTimeout) as caught:
        await client.request("GET", "/slow", request_id="rid-slow")
    assert "127.0.0.1" not in caught.value.detail
    assert caught.value.outcome_unknown
    assert calls(client, "timeout") == before + 1
    assert fake.hits["GET", "/slow"] == 1  # a timeout is not retried: it would multiply the wait
    assert client.reachability.state == "timeout"


async def test_closed_port_is_service_unavailable_with_retry_after(make_client: ClientFactory) -> None:
    port = closed_port()
    client = await make_client(f"http://127.0.0.1:{port}")
    before = calls(client, "unavailable")
    with pytest.raises(ServiceUnavailable) as caught:
        await client.request("GET", "/users/1")
    assert caught.value.headers["Retry-After"] == "1"
    assert str(port) not in caught.value.detail
    assert not caught.value.outcome_unknown  # never connected: nothing was sent
    assert calls(client, "unavailable") == before + 1
    assert client.reachability.state == "unreachable"


async def test_get_is_retried_on_503_until_it_succeeds(make_client: ClientFactory, fake: FakeDataService) -> None:
    client = await make_client(retries=2)
    fake.unavailable_times = 2
    reply = await client.request("GET", "/users/4")
    assert reply.data == {"id": 4}
    assert fake.hits["GET", "/users/4"] == 3


async def test_retries_are_bounded(make_client: ClientFactory, fake: FakeDataService) -> None:
    client = await make_client(retries=2)
    fake.unavailable_times = 10
    with pytest.raises(BadGateway):
        await client.request("GET", "/users/4")
    assert fake.hits["GET", "/users/4"] == 3


async def test_post_is_never_retried(make_client: ClientFactory, fake: FakeDataService) -> None:
    client = await make_client(retries=2)
    fake.unavailable_times = 1
    with pytest.raises(BadGateway):
        await client.request("POST", "/users/", json={"email": "a@example.com"})
    assert fake.hits["POST", "/users/"] == 1


async def test_breaker_opens_after_n_failures_and_stops_calling(
    make_client: ClientFactory, fake: FakeDataService
) -> None:
    client = await make_client(retries=0, breaker_failures=3, breaker_cooldown_s=30)
    fake.healthy = False
    for _ in range(3):
        with pytest.raises(BadGateway):
            await client.request("GET", "/users/1")
    assert client.breaker_state == "open"
    assert not await client.ready()
    assert circuit_gauge(client) == 2

    before = calls(client, "circuit_open")
    with pytest.raises(ServiceUnavailable) as caught:
        await client.request("GET", "/users/1")
    assert caught.value.headers["Retry-After"] == "30"
    assert fake.hits["GET", "/users/1"] == 3
    assert calls(client, "circuit_open") == before + 1


async def test_4xx_answers_do_not_open_the_breaker(make_client: ClientFactory) -> None:
    client = await make_client(retries=0, breaker_failures=2)
    for _ in range(4):
        with pytest.raises(NotFound):
            await client.request("GET", "/missing")
    assert client.breaker_state == "closed"


async def test_half_open_probe_after_cool_down_closes_on_success(
    make_client: ClientFactory, fake: FakeDataService
) -> None:
    client = await make_client(retries=0, breaker_failures=2, breaker_cooldown_s=0.2)
    fake.healthy = False
    for _ in range(2):
        with pytest.raises(BadGateway):
            await client.request("GET", "/users/1")
    assert client.breaker_state == "open"

    fake.healthy = True
    await asyncio.sleep(0.25)
    assert client.breaker_state == "half_open"
    assert await client.ready()
    assert circuit_gauge(client) == 1
    assert (await client.request("GET", "/users/1")).status == 200
    assert client.breaker_state == "closed"
    assert circuit_gauge(client) == 0


async def test_failed_probe_reopens_the_circuit(make_client: ClientFactory, fake: FakeDataService) -> None:
    client = await make_client(retries=0, breaker_failures=1, breaker_cooldown_s=0.2)
    fake.healthy = False
    with pytest.raises(BadGateway):
        await client.request("GET", "/users/1")
    await asyncio.sleep(0.25)
    with pytest.raises(BadGateway):
        await client.request("GET", "/users/1")
    assert client.breaker_state == "open"
    with pytest.raises(ServiceUnavailable):
        await client.request("GET", "/users/1")
    assert fake.hits["GET", "/users/1"] == 2


async def test_concurrent_calls_during_the_probe_get_503(make_client: ClientFactory, fake: FakeDataService) -> None:
    client = await make_client(retries=0, breaker_failures=1, breaker_cooldown_s=0.2)
    fake.healthy = False
    with pytest.raises(BadGateway):
        await client.request("GET", "/users/1")
    fake.healthy = True
    fake.gate.clear()
    fake.at_gate.clear()
    await asyncio.sleep(0.25)

    probe = asyncio.create_task(client.request("GET", "/users/2"))
    await asyncio.wait_for(fake.at_gate.wait(), 2)
    others = await asyncio.gather(*(client.request("GET", "/users/3") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(e, ServiceUnavailable) for e in others)
    assert all(e.headers["Retry-After"] == "1" for e in others if isinstance(e, ServiceUnavailable))
    assert fake.hits["GET", "/users/3"] == 0

    fake.gate.set()
    assert (await probe).data == {"id": 2}
    assert client.breaker_state == "closed"
    assert (await client.request("GET", "/users/3")).data == {"id": 3}


async def test_a_cancelled_probe_lets_the_next_caller_probe(make_client: ClientFactory, fake: FakeDataService) -> None:
    client = await make_client(retries=0, breaker_failures=1, breaker_cooldown_s=0.2)
    fake.healthy = False
    with pytest.raises(BadGateway):
        await client.request("GET", "/users/1")
    fake.healthy = True
    fake.gate.clear()
    fake.at_gate.clear()
    await asyncio.sleep(0.25)

    probe = asyncio.create_task(client.request("GET", "/users/2"))
    await asyncio.wait_for(fake.at_gate.wait(), 2)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    fake.gate.set()
    assert (await client.request("GET", "/users/3")).status == 200
    assert client.breaker_state == "closed"


async def test_answers_again_within_the_cool_down_after_the_data_service_returns(
    make_client: ClientFactory, aiohttp_server: AiohttpServer, fake: FakeDataService
) -> None:
    port = closed_port()
    client = await make_client(f"http://127.0.0.1:{port}", breaker_failures=2, breaker_cooldown_s=0.3)
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            await client.request("GET", "/users/1")
    assert client.breaker_state == "open"

    await aiohttp_server(fake.app(), port=port)
    loop = asyncio.get_running_loop()
    back_at = loop.time()
    while True:
        try:
            reply = await client.request("GET", "/users/1")
            break
        except ServiceUnavailable:
            await asyncio.sleep(0.05)
    assert reply.status == 200
    assert loop.time() - back_at < 1.0


async def test_ok_outcome_and_latency_are_counted(make_client: ClientFactory) -> None:
    client = await make_client()
    ok_before = calls(client, "ok")
    seconds = {"upstream": client.name}
    count_before = REGISTRY.get_sample_value("turnstile_data_service_call_seconds_count", seconds) or 0.0
    await client.request("GET", "/users/1")
    assert calls(client, "ok") == ok_before + 1
    assert REGISTRY.get_sample_value("turnstile_data_service_call_seconds_count", seconds) == count_before + 1


async def test_request_before_start_is_a_programming_error() -> None:
    client = DataServiceClient(DataServiceOptions(base_url="http://127.0.0.1:1"), name="test-unstarted")
    with pytest.raises(RuntimeError, match="not started"):
        await client.request("GET", "/users/1")


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://host/", "http://"])
def test_options_refuse_a_base_url_that_is_not_http(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        DataServiceOptions(base_url=url)


async def test_an_outage_is_one_warning_and_its_end_one_info_not_a_line_per_call(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    client = await make_client(f"http://127.0.0.1:{port}", retries=2, breaker_failures=100)
    with caplog.at_level(logging.DEBUG, logger="turnstile.dataservice"):
        for n in range(5):
            with pytest.raises(ServiceUnavailable):
                await client.request("GET", f"/users/{n}")
    mine = [r for r in caplog.records if r.name == "turnstile.dataservice"]
    assert [r.levelno for r in mine if r.levelno >= logging.INFO] == [logging.WARNING]
    assert client.reachability.state == "unreachable"
