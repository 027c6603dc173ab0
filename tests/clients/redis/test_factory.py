"""The client each topology gets, and the timeouts it is given."""

from __future__ import annotations

import gc

import coredis
import pytest

from app.clients.redis.factory import Timeouts, make_client
from app.clients.redis.patches import Pool, SentinelPool
from app.clients.redis.urls import parse_redis_url


@pytest.mark.parametrize(("socket_s", "connect_s"), [(0, 1), (1, 0), (-1, 1)])
def test_timeouts_must_be_positive(socket_s: float, connect_s: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Timeouts(socket_s=socket_s, connect_s=connect_s)


def test_a_pool_slot_may_take_a_connect_and_a_handshake() -> None:
    assert Timeouts(socket_s=0.5, connect_s=0.25).pool_s == 0.75


def test_standalone_gets_the_repairing_pool() -> None:
    url = "redis://127.0.0.1:6379/0?max_connections=7"
    built = make_client(url, parse_redis_url(url), Timeouts(socket_s=0.5, connect_s=0.5))
    assert isinstance(built.client, coredis.Redis)
    assert isinstance(built.client.connection_pool, Pool)
    assert built.client.connection_pool.max_connections == 7
    assert built.sentinel is None


def test_sentinel_gets_a_sentinel_client_and_the_primary_pool() -> None:
    url = "redis+sentinel://127.0.0.1:26379/mymaster/2"
    built = make_client(url, parse_redis_url(url), Timeouts(socket_s=0.5, connect_s=0.5))
    assert isinstance(built.sentinel, coredis.Sentinel)
    assert isinstance(built.client.connection_pool, SentinelPool)


def test_cluster_gets_a_cluster_client_whose_streams_close() -> None:
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    built = make_client(url, parse_redis_url(url), Timeouts(socket_s=0.5, connect_s=0.5))
    assert isinstance(built.client, coredis.RedisCluster)
    built.close()
    del built
    gc.collect()  # an unclosed stream would warn here (warnings are errors)
