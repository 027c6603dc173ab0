"""The coredis client a `RedisTarget` needs, built without I/O.

A cluster client is a `coredis.RedisCluster`, which has the same command methods as
`coredis.Redis`; keys of one multi-key command must share a hash slot.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import attrs
import coredis
from coredis.connection import TCPLocation
from coredis.exceptions import ClusterDownError, TryAgainError
from coredis.retry import CompositeRetryPolicy, ConstantRetryPolicy
from coredis.typing import Node

from app.clients.redis.cluster import ClusterPool
from app.clients.redis.patches import (
    FastRetryPolicy,
    Pool,
    SentinelPool,
    close_cluster_streams,
    read_coredis_flags_once,
    time_replies_with_a_timer,
)
from app.clients.redis.urls import RedisTarget


@attrs.frozen
class Timeouts:
    """socket_s: the longest wait for a reply (and the handshake); connect_s: for a TCP (and TLS) connect."""

    socket_s: float
    connect_s: float

    def __attrs_post_init__(self) -> None:
        if self.socket_s <= 0 or self.connect_s <= 0:
            msg = "Redis timeouts must be positive"
            raise ValueError(msg)

    @property
    def pool_s(self) -> float:
        """Taking a pool slot plus dialing and the handshake."""
        return self.connect_s + self.socket_s


@attrs.define
class BuiltClient:
    """A coredis client and, for Sentinel, the sentinel client whose context it needs too."""

    client: Any
    sentinel: coredis.Sentinel[str] | None = None

    def close(self) -> None:
        """Release what coredis leaves open once the client is done for good."""
        close_cluster_streams(self.client)

    @contextlib.asynccontextmanager
    async def entered(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if self.sentinel is not None:
                await stack.enter_async_context(self.sentinel)
            await stack.enter_async_context(self.client)
            yield


def make_client(url: str, target: RedisTarget, timeouts: Timeouts) -> BuiltClient:
    """The client for `url` (already parsed into `target`), decoding replies to ``str``."""
    read_coredis_flags_once()
    time_replies_with_a_timer()
    common: dict[str, Any] = {"stream_timeout": timeouts.socket_s, "connect_timeout": timeouts.connect_s}
    if target.topology == "standalone":
        pool = Pool.from_url(url, decode_responses=True, timeout=timeouts.pool_s, **common)
        return BuiltClient(coredis.Redis(connection_pool=pool, decode_responses=True, retry_policy=FastRetryPolicy()))
    if target.topology == "sentinel":
        sentinel = coredis.Sentinel(
            [TCPLocation(host, port) for host, port in target.nodes],
            sentinel_kwargs={**common, "connection_pool_cls": Pool},
            decode_responses=True,
            retry_policy=FastRetryPolicy(),
            **common,
        )
        primary = sentinel.primary_for(
            target.service,
            connection_pool_class=SentinelPool,
            db=target.db,
            username=target.username,
            password=target.password,
        )
        return BuiltClient(primary, sentinel)
    cluster = coredis.RedisCluster(
        startup_nodes=[Node(host=host, port=port) for host, port in target.nodes],
        connection_pool_cls=ClusterPool,
        # The layout comes from the first node that answers: checking every node's
        # `cluster-require-full-coverage` would dial the masters that are down, at every refresh.
        skip_full_coverage_check=True,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        decode_responses=True,
        pool_timeout=timeouts.pool_s,
        retry_policy=CompositeRetryPolicy(
            ConstantRetryPolicy((ClusterDownError, TryAgainError), retries=1, delay=0.05), FastRetryPolicy()
        ),
        **common,
    )
    return BuiltClient(cluster)
