"""The cluster client's pool, patched so that one master down costs its own slots only.

coredis 6.9 keeps dialing a master that is down: every command for one of its slots pays a
refused connection, a retry and a layout refresh, and the refreshes slow the commands for
the other masters too (65-180 ms per read were measured with one master of three down).
`ClusterPool` remembers the nodes it could not reach: a command for one of their slots fails
at once (`NodeDown`, a `ConnectionError`, so `redis_errors()` makes it `RedisUnavailable`)
until a probe (`RedisHealth`, app/clients/redis/health.py) finds the node answering again.
The other masters' slots keep answering at their usual speed.

It also closes the buffers of a connection whose dial failed, as `RepairingPoolMixin` does
for the single-server pool, and the discovery clients coredis makes for each node use the
repairing pool too: otherwise each failed dial warns (`ResourceWarning`) when collected.
"""

from __future__ import annotations

import contextvars
from typing import Any, Final

import coredis
from coredis._utils import hash_slot
from coredis.cluster._node import ClusterNodeLocation
from coredis.connection import ClusterConnection, TCPLocation
from coredis.pool import ClusterConnectionPool

from app.clients.redis.errors import NodeDown, describe
from app.clients.redis.patches import Pool, close_buffers, take_idle

Address = tuple[str, int]

_dialing: contextvars.ContextVar[ClusterConnection | None] = contextvars.ContextVar(
    "turnstile_cluster_dialing", default=None
)
_probing: contextvars.ContextVar[bool] = contextvars.ContextVar("turnstile_cluster_probing", default=False)


class _RecordedConnection(ClusterConnection):
    """A cluster connection that the pool can find again when dialing it fails."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _dialing.set(self)


class ClusterPool(ClusterConnectionPool):
    """The cluster pool, failing fast for the nodes it found down (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_class = _RecordedConnection
        self.down: set[Address] = set()

    def holder(self, key: str) -> Address:
        """The master that holds `key`'s slot."""
        node = self.cluster_layout.node_for_slot(hash_slot(key.encode()))
        return node.host, node.port

    def primaries(self) -> list[Address]:
        """The masters of the current layout (empty before the first discovery)."""
        return sorted({(node.host, node.port) for node in self.cluster_layout.primaries})

    async def probe(self, address: Address) -> str | None:
        """PING `address` through the pool, even if it is marked down, and mark it by the
        answer: None when it answered, else why not. Never raises."""
        node = self.cluster_layout.node_for_location(TCPLocation(*address))
        if node is None:
            return "not in the cluster layout"
        token = _probing.set(True)
        try:
            connection = await self.get_connection(node)
            try:
                await connection.create_request(b"PING", decode=False)
            finally:
                self.release(connection)
        except Exception as exc:  # a probe reports, it does not raise
            self.down.add(address)
            return describe(exc)
        finally:
            _probing.reset(token)
        self.down.discard(address)
        return None

    async def _get_connection_by_node(self, node: ClusterNodeLocation) -> ClusterConnection:
        if (node.host, node.port) in self.down and not _probing.get():
            msg = f"{node.name} is not answering"
            raise NodeDown(msg)
        if (connection := take_idle(self._node_pool(TCPLocation(node.host, node.port)))) is not None:
            return connection  # type: ignore[no-any-return]
        return await super()._get_connection_by_node(node)

    async def _make_node_connection(self, node: ClusterNodeLocation) -> ClusterConnection:
        token = _dialing.set(None)
        try:
            return await super()._make_node_connection(node)
        except BaseException:
            connection = _dialing.get()
            if connection is not None:
                close_buffers(connection)
            self.down.add((node.host, node.port))
            raise
        finally:
            _dialing.reset(token)


DISCOVERY_POOL: Final = Pool


def _as_client(self: ClusterNodeLocation, **client_args: Any) -> coredis.Redis[Any]:
    """coredis 6.9's `ClusterNodeLocation.as_client`, with the repairing pool."""
    pool = DISCOVERY_POOL(
        connection_class=ClusterConnection,
        location=TCPLocation(self.host, self.port),
        decode_responses=client_args.get("decode_responses", False),
        encoding=client_args.get("encoding", "utf-8"),
        username=client_args.get("username"),
        password=client_args.get("password"),
        credential_provider=client_args.get("credential_provider"),
        ssl_context=client_args.get("ssl_context"),
        stream_timeout=client_args.get("stream_timeout"),
        connect_timeout=client_args.get("connect_timeout"),
    )
    return coredis.Redis(connection_pool=pool)


ClusterNodeLocation.as_client = _as_client  # type: ignore[method-assign]
