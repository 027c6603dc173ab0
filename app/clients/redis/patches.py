"""What coredis 6.9 does not do the way a service needs, and the small subclasses that fix it.

- The default retry policy retries `TimeoutError` too, which triples the time a hung server
  costs. `FastRetryPolicy` retries only a fast connection failure, once.
- A caller cancelled while the pool dials a new connection (a `wait_for` around a command, a
  cancelled request) makes `ConnectionPool` lose that pool slot for good; once
  `max_connections` are lost every command waits forever. `RepairingPoolMixin` gives the slot
  back. The cluster pool is not patched this way: do not cancel commands on a cluster.
- A connection whose connect fails never closes the buffers it made in ``__init__``, and each
  one warns (`ResourceWarning`) when it is collected: `close_buffers`. A cluster client's
  layout never closes its error stream: `close_cluster_streams`, once the client is done.
- Every command reads ``os.environ`` several times (`coredis.Config`'s flags, e.g. whether its
  OpenTelemetry support is on): a fifth of a command's CPU. The variables are fixed for the
  life of the process, so `read_coredis_flags_once` keeps each first answer.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, Final

import coredis
import coredis.config
from coredis.connection import BaseConnection
from coredis.exceptions import ConnectionError
from coredis.pool import ConnectionPool, SentinelConnectionPool
from coredis.retry import ConstantRetryPolicy

from app.clients.redis.errors import NodeDown, caused_by_timeout

# The anyio streams a coredis 6.9 connection makes in ``__init__``; its `run` closes them only
# once it gets going.
CONNECTION_BUFFERS: Final = (
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
    "_write_buffer_in",
    "_write_buffer_out",
)


def close_buffers(connection: Any) -> None:
    """Close a coredis connection's buffers; idempotent when its `run` closed them already."""
    for name in CONNECTION_BUFFERS:
        getattr(connection, name).close()


def close_cluster_streams(client: Any) -> None:
    """Close the streams a `RedisCluster`'s layout opened; nothing for other clients."""
    layout = getattr(client.connection_pool, "cluster_layout", None)
    for stream in getattr(layout, "_error_stream", ()):
        stream.close()


def read_coredis_flags_once() -> None:
    """Make coredis read each of its ``COREDIS_*`` environment flags once, not per command.
    Idempotent; the flags set in code (``coredis.Config.optimized = True``) still apply."""
    read = coredis.config._env_truthy
    if not hasattr(read, "cache_info"):
        coredis.config._env_truthy = functools.cache(read)


class FastRetryPolicy(ConstantRetryPolicy):
    """Retry a connection error once (a connection that died under a command), never a timeout
    and never a cluster node known to be down."""

    def __init__(self) -> None:
        super().__init__((ConnectionError,), retries=1, delay=0.01)

    def will_retry(self, exc: BaseException) -> bool:
        return super().will_retry(exc) and not caused_by_timeout(exc) and not isinstance(exc, NodeDown)


_dialing: contextvars.ContextVar[BaseConnection | None] = contextvars.ContextVar(
    "turnstile_redis_dialing", default=None
)


class RepairingPoolMixin(ConnectionPool[Any]):
    """Undo what coredis leaves behind when dialing a new connection does not succeed."""

    async def _construct_connection(self) -> Any:
        connection = await super()._construct_connection()
        _dialing.set(connection)  # same task as get_connection: the caller sees it after the await
        return connection

    async def get_connection(self, **kwargs: Any) -> Any:
        token = _dialing.set(None)
        try:
            return await super().get_connection(**kwargs)
        except BaseException as exc:
            connection = _dialing.get()
            if connection is not None:
                close_buffers(connection)
                # coredis itself returns the slot when dialing fails with a RedisError.
                if not isinstance(exc, coredis.exceptions.RedisError):
                    with contextlib.suppress(Exception):
                        self._available_connections.append_nowait(None)
            raise
        finally:
            _dialing.reset(token)


class Pool(RepairingPoolMixin, ConnectionPool[Any]):
    """The single-server pool."""


class SentinelPool(RepairingPoolMixin, SentinelConnectionPool):
    """The pool of a Sentinel-managed primary."""
