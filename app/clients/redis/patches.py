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
- Every command opens two anyio cancel scopes (`fail_after`, `move_on_after`): one to wait for
  a pool connection, one for the reply. Each is two generator context managers, a backend
  lookup and a task-state update: together about a third of a command's CPU. The pool's wait
  is skipped when an idle connection is already there (`RepairingPoolMixin.get_connection`),
  and `time_replies_with_a_timer` bounds the reply with one event-loop timer instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from typing import Any, Final

import coredis
import coredis.config
from coredis._utils import nativestr
from coredis.connection import BaseConnection
from coredis.connection._request import Request
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


def take_idle(available: Any) -> Any:
    """A connection from a coredis pool's queue when one is idle, reusable and nobody queues
    for it; else None, and the pool's own way (wait, or dial) applies.

    That way takes the queue's lock and opens an anyio timeout scope to wait for what is
    already there. Taking it at once is the same choice (the queue hands out its newest idle
    connection), made without an await, so no other task can step in between.
    """
    idle = available._queue
    if idle and not available._getters and not available._lock.locked():
        connection = idle[-1]
        if connection is not None and connection.reusable:
            available.get_nowait()
            return connection
    return None


def time_replies_with_a_timer() -> None:
    """A command's reply is awaited under an event-loop timer that fails it after the response
    timeout, instead of an anyio cancel scope around the wait. What a timeout does is
    coredis's own: the request fails with `TimeoutError` and, for a blocking command, its
    connection is dropped. Idempotent."""
    Request.get_result = _get_result_with_a_timer  # type: ignore[method-assign]


async def _get_result_with_a_timer(self: Request) -> Any:
    if not self._event.is_set():
        timeout = self.response_timeout
        timer = None if timeout is None else asyncio.get_running_loop().call_later(timeout, _time_out, self)
        try:
            await self._event.wait()
        except asyncio.CancelledError:
            self._handle_response_cancellation(f"{nativestr(self.command)} was cancelled")
            raise
        finally:
            if timer is not None:
                timer.cancel()
    return self._result_or_exc()


def _time_out(request: Request) -> None:
    if request._event.is_set():
        return
    reason = f"{nativestr(request.command)} timed out after {request.response_timeout} seconds"
    request._exc = TimeoutError(reason)
    request._event.set()
    request._handle_response_cancellation(reason)


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
        if (connection := take_idle(self._available_connections)) is not None:
            self.statistics.connection_leased(connection)
            return connection
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
