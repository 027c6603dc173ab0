"""Instances on the Redis Cluster when part of it fails (contract §9a): a master down, a master
back empty, the whole cluster away and back, as the logs tell it. Each test names the item of
the issue ("what was seen") it reproduces; each stops and starts masters of the test cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.amqp_capture import eventually, remove_test_topology
from tests.integration.conftest import Client, StackFactory, admin_headers, bearer, login, register
from tests.integration.instances import AUTH_PREFIX, family_of, master_of, start_instances
from tests.services import (
    cluster_ports,
    flush_redis,
    start_cluster_node,
    start_service,
    stop_cluster_node,
    stop_service,
)

PASSWORD = "correct-horse-1"
ME = "/api/v1/auth/me"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def broker(amqp_url: str, unique: str) -> AsyncIterator[str]:
    yield amqp_url
    await remove_test_topology(amqp_url, unique)


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[str]:
    await flush_redis(redis_cluster_url)
    yield redis_cluster_url
    await start_service("cluster")  # whatever a test stopped comes back


async def readyz(client: Client) -> dict[str, Any]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    body["http_status"] = response.status
    return body


async def until_redis(client: Client, state: str, within_s: float) -> None:
    """Poll /readyz until it says Redis is `state`."""

    async def reached() -> bool:
        current: str = (await readyz(client))["checks"]["redis"]
        return current == state

    await eventually(reached, within_s, f"readyz says redis={state}")


async def mean_read_s(clients: tuple[Client, ...], users: list[dict[str, Any]], headers: dict[str, str]) -> float:
    """The mean time of a read of each user on each instance, five times over."""
    started = time.monotonic()
    reads = 0
    for _ in range(5):
        for client in clients:
            for user in users:
                assert (await client.get(f"/api/v1/users/{user['id']}", headers=headers)).status == 200
                reads += 1
    return (time.monotonic() - started) / reads


async def test_item4_a_master_back_empty_revives_no_revoked_token(
    stack: StackFactory, cluster: str, broker: str
) -> None:
    a, b = await start_instances(stack, cluster, cluster, broker=broker)
    admin = await admin_headers(a)
    user = await register(a, "ann@example.com", PASSWORD)
    victim = await master_of(cluster, f"{AUTH_PREFIX}revoked:{user['id']}")
    old = await login(a, "ann@example.com", PASSWORD)
    while await master_of(cluster, f"{AUTH_PREFIX}fam:{family_of(old)}") == victim:
        old = await login(a, "ann@example.com", PASSWORD)  # a session whose record survives the restart
    for change in (False, True):  # disabled, then enabled again: only the cut-off stops old tokens
        resp = await a.patch(f"/api/v1/users/{user['id']}", json={"is_active": change}, headers=admin)
        assert resp.status == 200
    assert (await b.get(ME, headers=bearer(old))).status == 401

    await stop_cluster_node(victim)
    await start_cluster_node(victim)  # back, and empty: the Redis copy of the cut-off is gone
    (c,) = await start_instances(stack, cluster, broker=broker)  # never heard of the revocation

    for client in (a, b, c):
        assert (await client.get(ME, headers=bearer(old))).status == 401
    new = bearer(await login(c, "ann@example.com", PASSWORD))
    for client in (a, b, c):
        assert (await client.get(ME, headers=new)).status == 200


async def test_item7_one_master_down_leaves_the_rest_working_and_readyz_says_degraded(
    stack: StackFactory, cluster: str, broker: str
) -> None:
    a, b = await start_instances(stack, cluster, cluster, broker=broker)
    admin = await admin_headers(a)
    users = [await register(a, f"user{i}@example.com", PASSWORD) for i in range(6)]
    victim = cluster_ports(cluster)[1]
    assert (await readyz(a))["details"]["redis"]["topology"] == "cluster"
    per_read_before = await mean_read_s((a, b), users, admin)

    await stop_cluster_node(victim)
    try:
        for client in (a, b):
            await until_redis(client, "degraded", 10)
        body = await readyz(a)
        assert body["http_status"] == 200
        assert body["status"] == "ready"
        nodes = body["details"]["redis"]["nodes"]
        assert nodes[f"127.0.0.1:{victim}"] == "down"
        assert sorted(nodes.values()) == ["down", "ok", "ok"]

        clients = (a, b)
        sessions = [await login(clients[i % 2], f"user{i}@example.com", PASSWORD) for i in range(6)]
        for i, tokens in enumerate(sessions):
            presented = {"refresh_token": tokens["refresh_token"]}
            refreshed = await clients[(i + 1) % 2].post("/api/v1/auth/refresh", json=presented)
            assert refreshed.status == 200, await refreshed.text()
        per_read = await mean_read_s(clients, users, admin)
        # No read pays for the dead master (measured: 65-180 ms each before); the bound allows
        # for a busy machine.
        assert per_read < max(0.05, 3 * per_read_before), (per_read, per_read_before)
    finally:
        await start_cluster_node(victim)
    for client in (a, b):
        await until_redis(client, "ok", 15)


async def test_item8_an_outage_and_its_end_are_one_log_line_each(
    stack: StackFactory, cluster: str, broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    a, b = await start_instances(stack, cluster, cluster, broker=broker)
    admin = await admin_headers(a)
    user = await register(a, "ann@example.com", PASSWORD)
    caplog.clear()

    await stop_service("cluster")
    try:
        deadline = time.monotonic() + 6  # past the publisher's idle outbox check (5 s)
        while time.monotonic() < deadline:
            for client in (a, b):
                await client.get(f"/api/v1/users/{user['id']}", headers=admin)
            await asyncio.sleep(0.2)
        changed = await a.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Changed"}, headers=admin)
        assert changed.status == 200
    finally:
        await start_service("cluster")
    for client in (a, b):
        await until_redis(client, "ok", 15)
        await client.get(f"/api/v1/users/{user['id']}", headers=admin)

    records = [r for r in caplog.records if r.name.startswith("turnstile.")]
    messages = [r.getMessage() for r in records]
    assert sum(m.startswith("Redis (cluster) unavailable") for m in messages) == 2  # one per instance
    assert sum(m.startswith("Redis (cluster) answering again after") for m in messages) == 2
    assert any(f"cache write of 'user:{user['id']}' deferred" in m for m in messages)  # not hidden
    assert not [m for m in messages if "silenced" in m or m.rstrip().endswith(": -")]
    assert not [r for r in records if r.levelno >= logging.ERROR and r.exc_info and "outbox" in r.getMessage()]
    assert sum("event outbox unreadable" in m for m in messages) <= 2
