"""Named upstreams (contract §10): a second real HTTP service, declared in the pipelines file
and called by `data-fetch` with the data service's machinery."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from app.reload import Outcome, reload_pipelines
from app.upstreams import upstreams_key
from tests.integration.conftest import Client, StackFactory, assert_problem

TOKEN = "billing-token-0123456789"

BILLING = """\
[upstreams.billing]
url = "${TEST_BILLING_URL}"
token = "${TEST_BILLING_TOKEN}"
timeout_s = 0.5
retries = 1
breaker_failures = 3
breaker_cooldown_s = 0.5
"""

INVOICES = """
[[pipelines]]
name = "get_invoice"
route = "GET /api/v1/invoices/{id:int}"
steps = [{ use = "data-fetch", call = "GET /invoices/{id}", upstream = "billing" }]

[[pipelines]]
name = "create_invoice"
route = "POST /api/v1/invoices"
steps = [{ use = "data-fetch", call = "POST /invoices", upstream = "billing", status = 201 }]
"""

HEALTH_ONLY = """
[[pipelines]]
name = "get_user"
route = "GET /api/v1/users/{id:int}"
steps = [{ use = "data-fetch", call = "GET /api/v1/users/{id}" }]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Billing:
    """A second service in the test process: answers as `mode` says, remembers what it was sent."""

    port: int = attrs.Factory(free_port)
    mode: str = "ok"  # ok | garbage | error | unavailable | slow
    seen: list[dict[str, Any]] = attrs.Factory(list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({
            "method": request.method, "path": request.path, "request_id": request.headers.get("X-Request-ID"),
            "authorization": request.headers.get("Authorization"),
        })
        match self.mode:
            case "garbage":
                return web.Response(text="<html>oops</html>", content_type="text/html")
            case "error":
                return web.Response(status=500, text="Traceback: secret")
            case "unavailable":
                return web.Response(status=503)
            case "slow":
                await asyncio.sleep(2)
        return web.json_response({"invoice": request.match_info.get("id"), "total": 42}, status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/invoices/{id}", self.handle)
        app.router.add_route("*", "/invoices", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def billing(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Billing]:
    service = Billing()
    await service.start()
    monkeypatch.setenv("TEST_BILLING_URL", service.url)
    monkeypatch.setenv("TEST_BILLING_TOKEN", TOKEN)
    yield service
    await service.stop()


async def with_pipelines(stack: StackFactory, tmp_path: Path, text: str) -> Client:
    path = tmp_path / "upstream-pipelines.toml"
    path.write_text(text)
    return await stack(pipelines_file=path)


def calls(upstream: str, outcome: str) -> float:
    labels = {"upstream": upstream, "outcome": outcome}
    return REGISTRY.get_sample_value("turnstile_data_service_calls_total", labels) or 0.0


async def readyz(client: Client) -> dict[str, Any]:
    resp = await client.get("/readyz")
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body  # an upstream's open circuit never takes the pod out
    return body


async def test_a_named_upstream_answers_with_the_request_id_and_its_token(
    stack: StackFactory, tmp_path: Path, billing: Billing
) -> None:
    client = await with_pipelines(stack, tmp_path, BILLING + INVOICES)
    ok_before, data_service_before = calls("billing", "ok"), calls("data_service", "ok")
    resp = await client.get("/api/v1/invoices/7", headers={"X-Request-ID": "invoice-7"})
    assert resp.status == 200
    assert await resp.json() == {"invoice": "7", "total": 42}
    assert billing.seen == [{
        "method": "GET", "path": "/invoices/7", "request_id": "invoice-7", "authorization": f"Bearer {TOKEN}",
    }]
    assert calls("billing", "ok") == ok_before + 1
    assert calls("data_service", "ok") == data_service_before  # its own client, its own series
    metrics = await (await client.get("/metrics")).text()
    assert 'turnstile_circuit_state{upstream="billing"} 0.0' in metrics
    assert 'turnstile_data_service_call_seconds_count{upstream="billing"}' in metrics
    assert (await readyz(client))["upstreams"] == {"billing": "closed"}


@pytest.mark.parametrize("mode", ["garbage", "error"])
async def test_an_unusable_answer_is_a_502(stack: StackFactory, tmp_path: Path, billing: Billing, mode: str) -> None:
    client = await with_pipelines(stack, tmp_path, BILLING + INVOICES)
    billing.mode = mode
    body = await assert_problem(await client.get("/api/v1/invoices/7"), 502)
    assert body["detail"] == "an upstream service gave an answer this service could not use"
    assert "secret" not in str(body)


async def test_a_slow_upstream_is_a_504(stack: StackFactory, tmp_path: Path, billing: Billing) -> None:
    client = await with_pipelines(stack, tmp_path, BILLING + INVOICES)
    billing.mode = "slow"
    await assert_problem(await client.get("/api/v1/invoices/7"), 504)
    assert len(billing.seen) == 1  # a timeout is not retried


async def test_only_idempotent_calls_are_retried(stack: StackFactory, tmp_path: Path, billing: Billing) -> None:
    client = await with_pipelines(stack, tmp_path, BILLING + INVOICES)
    billing.mode = "unavailable"
    await assert_problem(await client.get("/api/v1/invoices/7"), 502)
    assert [c["method"] for c in billing.seen] == ["GET", "GET"]  # retries = 1
    billing.seen.clear()
    await assert_problem(await client.post("/api/v1/invoices"), 502)
    assert [c["method"] for c in billing.seen] == ["POST"]  # a lost answer may hide a write


async def test_a_down_upstream_is_503_and_its_circuit_opens_then_recovers(
    stack: StackFactory, tmp_path: Path, billing: Billing
) -> None:
    client = await with_pipelines(stack, tmp_path, BILLING + INVOICES)
    before = calls("billing", "unavailable"), calls("billing", "circuit_open")
    await billing.stop()
    body = await assert_problem(await client.get("/api/v1/invoices/7"), 503)
    assert body["detail"] == "an upstream service is unreachable"
    await assert_problem(await client.get("/api/v1/invoices/7"), 503)  # 2 x 2 attempts: 3 failures open it
    assert (await readyz(client))["upstreams"] == {"billing": "open"}
    paused = await assert_problem(await client.get("/api/v1/invoices/7"), 503)
    assert paused["detail"] == "an upstream service is failing; calls to it are paused"
    assert calls("billing", "unavailable") == before[0] + 2
    assert calls("billing", "circuit_open") == before[1] + 1
    # The data service's routes and circuit are not touched by another upstream's outage.
    assert (await readyz(client))["checks"]["data_service"] == "ok"

    await billing.start()
    deadline = time.monotonic() + 5
    while (await client.get("/api/v1/invoices/7")).status != 200:
        assert time.monotonic() < deadline, "the circuit never closed again"
        await asyncio.sleep(0.1)
    assert (await readyz(client))["upstreams"] == {"billing": "closed"}


async def test_an_upstream_404_passes_through(stack: StackFactory, tmp_path: Path, billing: Billing) -> None:
    text = BILLING + INVOICES.replace("GET /invoices/{id}", "GET /nothing/{id}")
    client = await with_pipelines(stack, tmp_path, text)
    await assert_problem(await client.get("/api/v1/invoices/7"), 404)


async def test_a_reload_brings_in_a_new_upstream_and_keeps_an_unchanged_one(
    stack: StackFactory, tmp_path: Path, billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await with_pipelines(stack, tmp_path, HEALTH_ONLY)
    assert "upstreams" not in await readyz(client)
    await assert_problem(await client.get("/api/v1/invoices/7"), 404)

    (tmp_path / "upstream-pipelines.toml").write_text(BILLING + INVOICES)
    assert await reload_pipelines(client.app) is Outcome.OK
    assert (await client.get("/api/v1/invoices/7")).status == 200
    first = client.app[upstreams_key].client("billing")
    assert await reload_pipelines(client.app) is Outcome.OK
    assert client.app[upstreams_key].client("billing") is first  # same settings: same pool and circuit

    other = Billing()
    await other.start()
    try:
        monkeypatch.setenv("TEST_BILLING_URL", other.url)  # ${VAR}s are read again on a reload
        assert await reload_pipelines(client.app) is Outcome.OK
        assert (await client.get("/api/v1/invoices/8")).status == 200
        assert [c["path"] for c in other.seen] == ["/invoices/8"]
        assert client.app[upstreams_key].client("billing") is not first
        assert (await first.request("GET", "/invoices/9")).status == 200  # left behind, still usable a while

        monkeypatch.delenv("TEST_BILLING_URL")
        assert await reload_pipelines(client.app) is Outcome.INVALID  # a missing variable changes nothing
        assert (await client.get("/api/v1/invoices/10")).status == 200
        assert [c["path"] for c in other.seen] == ["/invoices/8", "/invoices/10"]
    finally:
        await other.stop()
