"""Data-service faults as clients meet them (contract §5, §7): the real reference data service
behind a fault-injecting proxy, with short timeouts and a quick breaker so each test is fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.amqp_capture import eventually
from tests.integration.conftest import Client, StackFactory, admin_headers, assert_problem, bearer, login, register
from tests.integration.faults import FaultProxy, Mode

ME = "/api/v1/auth/me"
TIMEOUT_S = 0.5
BREAKER_FAILURES = 3
COOLDOWN_S = 1.0
RECOVERY_BOUND_S = 10.0  # contract §7: 200 again within 10 s of the data service's return




@pytest.fixture
async def proxy(dataservice: str) -> AsyncIterator[FaultProxy]:
    faulty = FaultProxy(dataservice, slow_s=TIMEOUT_S * 4)
    await faulty.start()
    yield faulty
    await faulty.close()


async def behind(stack: StackFactory, proxy: FaultProxy, **overrides: Any) -> tuple[Client, dict[str, str]]:
    """The service talking to the data service through `proxy`, and a user's bearer headers."""
    settings: dict[str, Any] = {
        "data_service_url": proxy.url, "data_service_timeout_s": TIMEOUT_S, "data_service_retries": 0,
        "breaker_failures": BREAKER_FAILURES, "breaker_cooldown_s": COOLDOWN_S,
    }
    settings.update(overrides)
    client = await stack(**settings)
    await register(client, "ann@example.com")
    return client, bearer(await login(client, "ann@example.com", "correct-horse-1"))


async def until_ok(client: Client, headers: dict[str, str]) -> float:
    """Poll GET /me until it answers 200; the seconds it took. Fails after the contract's bound."""
    started = time.monotonic()
    while time.monotonic() - started < RECOVERY_BOUND_S:
        resp = await client.get(ME, headers=headers)
        if resp.status == 200:
            return time.monotonic() - started
        await assert_problem(resp, resp.status)
        await asyncio.sleep(0.1)
    pytest.fail(f"GET {ME} did not recover within {RECOVERY_BOUND_S} s")


@pytest.mark.parametrize(
    ("mode", "status"),
    [("slow", 504), ("garbage", 502), ("error500", 502)],
)
async def test_a_misbehaving_data_service_becomes_a_gateway_problem(
    stack: StackFactory, proxy: FaultProxy, mode: Mode, status: int
) -> None:
    client, headers = await behind(stack, proxy)
    proxy.mode = mode
    started = time.monotonic()
    await assert_problem(await client.get(ME, headers=headers), status)
    assert time.monotonic() - started < TIMEOUT_S * 3
    # A write (never retried) meets the same answer.
    await assert_problem(await client.post("/api/v1/users", json={"email": "b@example.com", "password": "x" * 8},
                                           headers=await _admin_while_faulty(client, proxy)), status)
    proxy.mode = "pass"
    assert (await client.get(ME, headers=headers)).status == 200


async def _admin_while_faulty(client: Client, proxy: FaultProxy) -> dict[str, str]:
    """Admin headers, logged in through a healthy proxy (login itself reads the data service)."""
    mode, proxy.mode = proxy.mode, "pass"
    try:
        return await admin_headers(client)
    finally:
        proxy.mode = mode


async def test_an_unreachable_data_service_is_503_with_retry_after(stack: StackFactory, proxy: FaultProxy) -> None:
    client, headers = await behind(stack, proxy, data_service_retries=1)
    await proxy.go_down()
    problem = await assert_problem(await client.get(ME, headers=headers), 503)
    assert "127.0.0.1" not in problem["detail"]
    await proxy.come_back()
    assert (await client.get(ME, headers=headers)).status == 200


async def test_the_breaker_opens_then_recovers_by_itself(stack: StackFactory, proxy: FaultProxy) -> None:
    client, headers = await behind(stack, proxy)
    proxy.mode = "error500"
    before = proxy.calls
    for _ in range(BREAKER_FAILURES):
        await assert_problem(await client.get(ME, headers=headers), 502)
    assert proxy.calls == before + BREAKER_FAILURES
    # Open: refused here, without a call going out.
    refused = await assert_problem(await client.get(ME, headers=headers), 503)
    assert proxy.calls == before + BREAKER_FAILURES
    assert refused["type"].endswith("service-unavailable")
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["data_service"] == "open"
    proxy.mode = "pass"
    took = await until_ok(client, headers)
    assert took < COOLDOWN_S + 2
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["data_service"] == "ok"


async def test_a_failed_probe_reopens_the_circuit(stack: StackFactory, proxy: FaultProxy) -> None:
    client, headers = await behind(stack, proxy)
    proxy.mode = "garbage"
    for _ in range(BREAKER_FAILURES):
        await assert_problem(await client.get(ME, headers=headers), 502)
    await asyncio.sleep(COOLDOWN_S + 0.1)
    # Cooled down, a trial call may go, but the last answer failed: not ready (an idle pod's own
    # probe, app/clients/reachability.py, brings it back when the data service answers).
    ready = await client.get("/readyz")
    assert ready.status == 503
    # It answers, badly: said so, not "unreachable", which sent operators to the network.
    assert (await ready.json())["checks"]["data_service"] == "failing"
    calls = proxy.calls
    await assert_problem(await client.get(ME, headers=headers), 502)  # the probe, still failing
    assert proxy.calls == calls + 1
    await assert_problem(await client.get(ME, headers=headers), 503)
    assert proxy.calls == calls + 1
    proxy.mode = "pass"
    await until_ok(client, headers)


async def test_the_service_recovers_after_the_data_service_comes_back(stack: StackFactory, proxy: FaultProxy) -> None:
    client, headers = await behind(stack, proxy)
    await proxy.go_down()
    for _ in range(BREAKER_FAILURES):
        await assert_problem(await client.get(ME, headers=headers), 503)
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["data_service"] == "open"
    calls = proxy.calls
    await proxy.come_back()
    await until_ok(client, headers)
    assert proxy.calls > calls
    assert (await client.get("/readyz")).status == 200


async def test_timeouts_open_the_breaker_and_cached_reads_do_not_need_it(
    stack: StackFactory, proxy: FaultProxy
) -> None:
    client, headers = await behind(stack, proxy)
    me = await (await client.get(ME, headers=headers)).json()
    user_url = f"/api/v1/users/{me['id']}"
    assert (await client.get(user_url, headers=headers)).headers["X-Cache"] == "MISS"
    proxy.mode = "slow"
    for _ in range(BREAKER_FAILURES):
        await assert_problem(await client.get(ME, headers=headers), 504)
    await assert_problem(await client.get(ME, headers=headers), 503)
    cached = await client.get(user_url, headers=headers)
    assert cached.status == 200
    assert cached.headers["X-Cache"] == "HIT"


async def test_readyz_follows_the_data_service_while_no_request_comes(stack: StackFactory, proxy: FaultProxy) -> None:
    # A breaker learns only from calls: with none, it said "ok" for a data service never reached
    # and "half_open" for one still down. An idle pod probes (app/clients/reachability.py).
    client, _ = await behind(stack, proxy)
    proxy.mode = "error500"

    async def readiness(status: int, state: str) -> bool:
        ready = await client.get("/readyz")
        return (ready.status, (await ready.json())["checks"]["data_service"]) == (status, state)

    await eventually(lambda: readiness(503, "failing"), 15, "the idle pod found the data service failing")
    proxy.mode = "pass"
    await eventually(lambda: readiness(200, "ok"), 15, "the idle pod found it back")
