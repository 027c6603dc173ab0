"""A login storm against bounded hashing (contract §12): refused at once, other routes served."""

from __future__ import annotations

import asyncio
from typing import Any

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
