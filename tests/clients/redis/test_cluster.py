"""A Redis Cluster with one master down: the other masters' slots answer at their usual speed,
the dead one's fail at once, the health check names the node, and it all comes back by itself.

Runs against the test cluster (REDIS_CLUSTER_URL, started by the test command); it stops one
of its masters and starts it again, empty.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from coredis._utils import hash_slot

from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors
from tests.clients.redis.proxy import eventually_true
from tests.services import cluster_ports, flush_redis, is_cluster, start_cluster_node, stop_cluster_node


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[RedisConnection]:
    await flush_redis(redis_cluster_url)
    connection = RedisConnection(redis_cluster_url, health_interval_s=0.2)
    await connection.start()
    try:
        yield connection
    finally:
        await connection.stop()


def node_of(connection: RedisConnection, key: str) -> int:
    """The port of the master that holds `key`'s slot."""
    pool = connection.client.connection_pool
    return int(pool.cluster_layout.node_for_slot(hash_slot(key.encode())).port)  # type: ignore[attr-defined]


@pytest.mark.timeout(90)
async def test_one_master_down_costs_its_own_slots_only(cluster: RedisConnection, unique: str) -> None:
    keys = [f"test:{unique}:{i}" for i in range(30)]
    for key in keys:
        await cluster.client.set(key, "v", px=60_000)
    assert cluster.health.state == "ok"
    victim = cluster_ports()[1]
    dead = [key for key in keys if node_of(cluster, key) == victim]
    live = [key for key in keys if node_of(cluster, key) != victim]
    assert dead
    assert live

    await stop_cluster_node(victim)
    try:
        assert await eventually_true(lambda: _state_is(cluster, "degraded"), 5)
        assert cluster.health.details()["nodes"][f"127.0.0.1:{victim}"] == "down"
        for _ in range(3):
            for key in dead:
                started = time.monotonic()
                with pytest.raises(RedisUnavailable), redis_errors():
                    await cluster.client.get(key)
                assert time.monotonic() - started < 0.05
            started = time.monotonic()
            for key in live:
                assert await cluster.client.get(key) == "v"
            assert (time.monotonic() - started) / len(live) < 0.02
    finally:
        await start_cluster_node(victim)

    assert await eventually_true(lambda: _state_is(cluster, "ok"), 10)
    for key in dead:  # back, and empty: nothing was saved
        assert await cluster.client.get(key) is None
    for key in live:
        assert await cluster.client.get(key) == "v"


async def _state_is(connection: RedisConnection, state: str) -> bool:
    await asyncio.sleep(0)
    return connection.health.state == state


@pytest.mark.timeout(60)
async def test_a_writer_free_to_choose_its_key_can_tell_which_keys_answer(cluster: RedisConnection) -> None:
    keys = [f"test:answers:{i}" for i in range(30)]
    assert all(cluster.answers(key) for key in keys)
    victim = cluster_ports()[2]
    await stop_cluster_node(victim)
    try:
        assert await eventually_true(lambda: _state_is(cluster, "degraded"), 5)
        for key in keys:
            assert cluster.answers(key) is (node_of(cluster, key) != victim)
    finally:
        await start_cluster_node(victim)
    assert await eventually_true(lambda: _state_is(cluster, "ok"), 10)
    assert all(cluster.answers(key) for key in keys)


async def test_a_single_server_answers_while_it_is_up(redis_url: str) -> None:
    if is_cluster(redis_url):
        pytest.skip("the single-server form")
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        assert connection.answers("any:key")
    finally:
        await connection.stop()
    down = RedisConnection("redis://127.0.0.1:1/0")
    await down.start()
    try:
        assert not down.answers("any:key")
    finally:
        await down.stop()
