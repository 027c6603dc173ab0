"""A login storm against bounded hashing (contract §12): refused at once, other routes served."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from tests.integration.conftest import StackFactory, register


async def test_a_login_storm_gets_503s_with_retry_after_not_a_queue(stack: StackFactory) -> None:
    # One hash at a time, none waiting, at a cost that takes a while: a burst must be refused.
    env = {"ARGON2_MAX_CONCURRENT": "1", "ARGON2_QUEUE": "0", "ARGON2_TIME_COST": "2", "ARGON2_MEMORY_KIB": "32768"}
    client = await stack(env)
    await register(client, "ann@example.com")
    body: dict[str, Any] = {"email": "ann@example.com", "password": "correct-horse-1"}
    answers = await asyncio.gather(*(client.post("/api/v1/auth/login", json=body) for _ in range(8)),
                                   client.get("/healthz"))
    *logins, health = answers
    statuses = sorted(resp.status for resp in logins)
    assert health.status == 200
    assert 200 in statuses
    assert 503 in statuses
    assert set(statuses) <= {200, 429, 503}  # 429: the failure limiter holds a hit per attempt in flight
    for resp in logins:
        if resp.status == 503:
            assert resp.headers["Retry-After"] == "1"
            assert resp.content_type == "application/problem+json"


def _data_service_calls() -> float:
    return sum(sample.value for metric in REGISTRY.collect() if metric.name == "turnstile_data_service_calls"
               for sample in metric.samples if sample.name == "turnstile_data_service_calls_total")


async def test_while_the_hashing_bound_is_full_a_login_is_refused_before_it_reads_the_user(
    stack: StackFactory,
) -> None:
    # In a storm the refusal is most of the work: it must not cost a data-service call first.
    env = {"ARGON2_MAX_CONCURRENT": "1", "ARGON2_QUEUE": "0", "ARGON2_TIME_COST": "8", "ARGON2_MEMORY_KIB": "65536"}
    client = await stack(env)
    await register(client, "bob@example.com")
    body: dict[str, Any] = {"email": "bob@example.com", "password": "correct-horse-1"}
    first = asyncio.create_task(client.post("/api/v1/auth/login", json=body))
    for _ in range(500):  # until its hash holds the only slot
        if (REGISTRY.get_sample_value("turnstile_password_hashes_in_flight") or 0) >= 1:
            break
        await asyncio.sleep(0.01)
    calls_before = _data_service_calls()
    refused = [await client.post("/api/v1/auth/login", json=body) for _ in range(3)]
    assert [resp.status for resp in refused] == [503, 503, 503]
    assert _data_service_calls() == calls_before
    assert (await first).status == 200
