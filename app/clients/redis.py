"""The one Redis connection per process, shared by the cache, token state, rate limits and outbox.

`RedisConnection(url)` owns a single coredis client. `start()` never fails because Redis is
down: the service boots degraded and the same object recovers when Redis comes back.
Callers use `connection.client` and wrap commands in `redis_errors()` to get one exception
type, `RedisUnavailable`, for "Redis is down or too slow". Keys read on every request go
through `connection.get`, which answers from a `LocalMirror` (app/clients/tracking.py) when
the connection was built with `mirror_prefixes` and Redis's invalidation pushes are flowing.

URL forms (`REDIS_URL`):

- ``redis://[[user]:password@]host[:port][/db]``: one server (query options as coredis's
  `ConnectionPool.from_url`, e.g. ``?max_connections=32``).
- ``rediss://…``: the same over TLS (``?ssl_ca_certs=…&ssl_cert_reqs=required&ssl_certfile=…``).
- ``unix://[[user]:password@]/path/to/redis.sock?db=0``: a Unix socket.
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]``: the primary
  of a Sentinel-managed set; the credentials are the primary's (the sentinels take none).
- ``redis+cluster://[[user]:password@]host:port[,host:port…]`` (``rediss+cluster://`` for TLS):
  a Redis Cluster, seeded from those nodes. `client` is then a `coredis.RedisCluster`, which
  has the same command methods; keys of one multi-key command must share a hash slot.

coredis 6 facts this module is built around (checked against coredis 6.9):

- Every command needs the client's ``async with`` to be active, and that block must be entered
  and exited in one task. A dedicated owner task holds it from `start()` to `stop()`. For a
  single server or Sentinel, entering does not connect; for a cluster it discovers the
  topology and fails while the cluster is down, so the owner re-enters with backoff.
- The pool reconnects by itself: a connection that the server closes leaves the pool, and the
  next command dials a new one. While the server is down each command fails fast with
  `coredis.exceptions.ConnectionError` (connection refused) or, when the server hangs, with the
  builtin `TimeoutError` after the stream timeout; the ``async with`` survives both.
- Trap: a caller cancelled while the pool dials a new connection (a `wait_for` around a
  command, a cancelled request) makes coredis's `ConnectionPool` lose that pool slot for good;
  once `max_connections` are lost every command waits forever. `_RepairingPoolMixin` gives
  the slot back. The cluster pool is not patched: do not cancel commands on a cluster.
- The default retry policy retries `TimeoutError` too, which triples the time a hung server
  costs. Here only fast connection failures are retried, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

import attrs
import coredis
from coredis.connection import BaseConnection, TCPLocation
from coredis.exceptions import (
    ClusterDownError,
    ClusterError,
    ConnectionError,
    RedisClusterError,
    SentinelError,
    TryAgainError,
)
from coredis.pool import ConnectionPool, SentinelConnectionPool
from coredis.retry import CompositeRetryPolicy, ConstantRetryPolicy
from coredis.typing import Node

from app.clients.tracking import MISSING, LocalMirror, close_buffers

log = logging.getLogger(__name__)

_BACKOFF_MIN_S: Final = 0.1
_BACKOFF_MAX_S: Final = 5.0
_PLAIN_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
_CLUSTER_SCHEMES: Final = frozenset({"redis+cluster", "rediss+cluster"})
_SENTINEL_SCHEME: Final = "redis+sentinel"
_POOL_NOT_ENTERED: Final = "Connection pool is not initialized"


class RedisUnavailable(Exception):
    """Redis is down, unreachable or too slow to answer within the configured timeouts."""


_UNAVAILABLE: Final = (
    ConnectionError,  # refused, reset, handshake failed (also BusyLoadingError)
    TimeoutError,  # no reply within the stream timeout, no slot within the pool timeout
    OSError,
    SentinelError,  # no primary (or a stale one) behind the sentinels
    ClusterDownError,
    TryAgainError,
    ClusterError,  # cluster redirections exhausted
)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Turn coredis's "cannot reach Redis now" errors into `RedisUnavailable`.

    Command errors (a wrong type, a script error, keys in different cluster slots) are bugs,
    not outages, and pass through unchanged.
    """
    try:
        yield
    except _UNAVAILABLE as exc:
        raise RedisUnavailable(_describe(exc)) from exc
    except RedisClusterError as exc:
        # The bare base class is what coredis raises when no cluster node can be reached.
        if type(exc) is not RedisClusterError:
            raise
        raise RedisUnavailable(_describe(exc)) from exc
    except RuntimeError as exc:
        # A cluster client between two lives of its ``async with`` (see the module docstring).
        if _POOL_NOT_ENTERED not in str(exc):
            raise
        raise RedisUnavailable("Redis is not connected yet") from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _caused_by_timeout(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class _FastRetryPolicy(ConstantRetryPolicy):
    """Retry a connection error once (a connection that died under a command), never a timeout."""

    def __init__(self) -> None:
        super().__init__((ConnectionError,), retries=1, delay=0.01)

    def will_retry(self, exc: BaseException) -> bool:
        return super().will_retry(exc) and not _caused_by_timeout(exc)


_dialing: contextvars.ContextVar[BaseConnection | None] = contextvars.ContextVar(
    "turnstile_redis_dialing", default=None
)


class _RepairingPoolMixin(ConnectionPool[Any]):
    """Undo what coredis 6.9 leaves behind when dialing a new connection does not succeed.

    - `get_connection` takes a free slot, then awaits the new connection; if the caller is
      cancelled there (or `pool_timeout` fires), coredis never returns the slot.
    - A connection whose connect fails never closes the buffers it made in ``__init__``, and
      each one warns (`ResourceWarning`) when it is collected.
    """

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


class _Pool(_RepairingPoolMixin, ConnectionPool[Any]):
    pass


class _SentinelPool(_RepairingPoolMixin, SentinelConnectionPool):
    pass


@attrs.frozen
class _Target:
    """What a URL names, parsed once so a bad URL fails at construction, not at start."""

    kind: str  # "plain" | "sentinel" | "cluster"
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def _parse(url: str) -> _Target:
    scheme = url.partition("://")[0].lower()
    if scheme in _PLAIN_SCHEMES:
        return _Target(kind="plain")
    if scheme == _SENTINEL_SCHEME or scheme in _CLUSTER_SCHEMES:
        return _parse_multi_host(url, scheme)
    known = ", ".join(sorted({*_PLAIN_SCHEMES, *_CLUSTER_SCHEMES, _SENTINEL_SCHEME}))
    msg = f"unsupported Redis URL scheme {scheme!r}: use one of {known}"
    raise ValueError(msg)


def _parse_multi_host(url: str, scheme: str) -> _Target:
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = 26379 if scheme == _SENTINEL_SCHEME else 6379
    nodes = tuple(_host_port(item, url, default_port) for item in hostlist.split(",") if item)
    if not nodes:
        msg = f"Redis URL {_redact(url)} names no host"
        raise ValueError(msg)
    path = [p for p in parts.path.split("/") if p]
    user, secret = unquote(username) or None, unquote(password) or None
    if scheme in _CLUSTER_SCHEMES:
        tls = scheme.startswith("rediss")
        return _Target(kind="cluster", nodes=nodes, username=user, password=secret, tls=tls)
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        msg = f"Redis URL {_redact(url)} must end in /service_name or /service_name/db"
        raise ValueError(msg)
    db = int(path[1]) if len(path) == 2 else 0
    service = unquote(path[0])
    return _Target(kind="sentinel", nodes=nodes, service=service, db=db, username=user, password=secret)


def _host_port(item: str, url: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6addr]:port``."""
    host, port = item, ""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port = item.partition(":")
    if not host or (port and not port.isdigit()):
        msg = f"Redis URL {_redact(url)} has a bad host:port {item!r}"
        raise ValueError(msg)
    return host, int(port) if port else default_port


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hosts}"


@attrs.define
class _Built:
    client: Any
    sentinel: coredis.Sentinel[str] | None = None

    @contextlib.asynccontextmanager
    async def entered(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if self.sentinel is not None:
                await stack.enter_async_context(self.sentinel)
            await stack.enter_async_context(self.client)
            yield


class RedisConnection:
    """The process's one coredis client, kept usable across Redis outages.

    Args:
        url: a `REDIS_URL` in one of the forms in this module's docstring.
        socket_timeout_s: the longest wait for a reply (and for the connect handshake).
        connect_timeout_s: the longest wait for a TCP (and TLS) connect.

    Raises:
        ValueError: the URL's scheme or shape is not one this module supports.

    A command on a down server fails within about ``connect_timeout_s + 2 * socket_timeout_s``
    at worst (a server that accepts but hangs), and within milliseconds when the server refuses.
    """

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 0.5,
        connect_timeout_s: float = 0.5,
        mirror_prefixes: tuple[str, ...] = (),
        mirror_max_entries: int = 10_000,
    ) -> None:
        if socket_timeout_s <= 0 or connect_timeout_s <= 0:
            msg = "Redis timeouts must be positive"
            raise ValueError(msg)
        self._url = url
        self._target = _parse(url)
        self._socket_timeout_s = socket_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._built: _Built | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._first_try = asyncio.Event()
        self._slow_pings: set[asyncio.Task[bool]] = set()
        # Not for a cluster: its keys live on many nodes, each needing its own tracking connection.
        self.mirror: LocalMirror | None = (
            LocalMirror(mirror_prefixes, max_entries=mirror_max_entries, check_primary=self._target.kind == "sentinel")
            if mirror_prefixes and self._target.kind != "cluster"
            else None
        )

    @property
    def url(self) -> str:
        return self._url

    async def get(self, key: str, *, decode: bool = True) -> Any:
        """GET `key` (``str``, or ``bytes`` when not `decode`), from the local mirror when it can.

        Raises coredis's errors like the client does (wrap it in `redis_errors()`). Whoever
        writes a mirrored key through this connection calls `invalidate_local` after the write.
        """
        mirror = self.mirror
        ticket = None
        if mirror is not None:
            entry = mirror.lookup(key)
            if entry is not MISSING and entry[0] is decode:
                return entry[1]
            ticket = mirror.begin(key)
        client = self.client
        try:
            if decode:
                value: Any = await client.get(key)
            else:
                with client.decoding(False) as raw:
                    value = await raw.get(key)
        except BaseException:
            if mirror is not None:
                mirror.abandon(key, ticket)
            raise
        if mirror is not None:
            mirror.complete(key, ticket, (decode, value))
        return value

    def invalidate_local(self, *keys: str) -> None:
        """Drop this process's copies of `keys` (it has just written them)."""
        if self.mirror is not None:
            self.mirror.invalidate(*keys)

    @property
    def client(self) -> coredis.Redis[str]:
        """The shared client (``decode_responses=True``); usable from any task while started.

        Read it where you use it rather than keeping it: it is only valid between start and stop.
        """
        if self._built is None:
            msg = "RedisConnection is not started"
            raise RuntimeError(msg)
        # A cluster client is a `RedisCluster[str]`: the same command surface, typed apart.
        return cast("coredis.Redis[str]", self._built.client)

    @property
    def started(self) -> bool:
        return self._owner is not None

    async def start(self) -> None:
        """Build the client and start the task that owns it; returns even when Redis is down."""
        if self._owner is not None:
            msg = "RedisConnection is already started"
            raise RuntimeError(msg)
        self._built = self._build()
        self._stopping.clear()
        self._first_try.clear()
        self._owner = asyncio.create_task(self._own(self._built), name=f"redis-owner {_redact(self._url)}")
        await self._first_try.wait()

    async def stop(self) -> None:
        """Leave the client's context in its owner task and wait for it; idempotent."""
        owner, self._owner = self._owner, None
        if owner is None:
            return
        self._stopping.set()
        await owner
        self._built = None

    async def ping(self) -> bool:
        """True when Redis answers PING within the timeouts; never raises.

        The command is not cancelled on timeout (see the module docstring): it is left to
        finish by itself within coredis's own timeouts.
        """
        if self._built is None:
            return False
        task = asyncio.ensure_future(self._ping())
        bound = self._connect_timeout_s + 2 * self._socket_timeout_s
        done, _ = await asyncio.wait({task}, timeout=bound)
        if task in done:
            return task.result()
        self._slow_pings.add(task)  # keep a reference until it ends by itself
        task.add_done_callback(self._slow_pings.discard)
        return False

    async def _ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:  # ping reports, it does not raise: any failure means "not ready"
            return False

    # --- construction -------------------------------------------------------------------------

    def _build(self) -> _Built:
        timeouts: dict[str, Any] = {
            "stream_timeout": self._socket_timeout_s,
            "connect_timeout": self._connect_timeout_s,
        }
        target = self._target
        if target.kind == "plain":
            # pool_timeout bounds taking a slot plus dialing and the handshake.
            pool = _Pool.from_url(
                self._url,
                decode_responses=True,
                timeout=self._connect_timeout_s + self._socket_timeout_s,
                **timeouts,
            )
            return _Built(coredis.Redis(connection_pool=pool, decode_responses=True, retry_policy=_FastRetryPolicy()))
        if target.kind == "sentinel":
            sentinel = coredis.Sentinel(
                [TCPLocation(host, port) for host, port in target.nodes],
                sentinel_kwargs={**timeouts, "connection_pool_cls": _Pool},
                decode_responses=True,
                retry_policy=_FastRetryPolicy(),
                **timeouts,
            )
            primary = sentinel.primary_for(
                target.service,
                connection_pool_class=_SentinelPool,
                db=target.db,
                username=target.username,
                password=target.password,
            )
            return _Built(primary, sentinel)
        cluster = coredis.RedisCluster(
            startup_nodes=[Node(host=host, port=port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            decode_responses=True,
            pool_timeout=self._connect_timeout_s + self._socket_timeout_s,
            retry_policy=CompositeRetryPolicy(
                ConstantRetryPolicy((ClusterDownError, TryAgainError), retries=1, delay=0.05), _FastRetryPolicy()
            ),
            **timeouts,
        )
        return _Built(cluster)

    # --- the owner task -----------------------------------------------------------------------

    async def _hold(self, built: _Built) -> None:
        """Wait for stop, keeping the mirror's tracking connection meanwhile."""
        if self.mirror is None:
            await self._stopping.wait()
            return
        tracker = asyncio.create_task(
            self.mirror.run(built.client.connection_pool, timeout_s=self._connect_timeout_s + self._socket_timeout_s),
            name="redis-mirror-tracking",
        )
        try:
            await self._stopping.wait()
        finally:
            tracker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tracker

    async def _own(self, built: _Built) -> None:
        """Hold the client's ``async with`` until stop; re-enter with backoff if it dies."""
        delay = _BACKOFF_MIN_S
        while not self._stopping.is_set():
            try:
                async with built.entered():
                    self._first_try.set()
                    delay = _BACKOFF_MIN_S
                    await self._hold(built)
                return
            except Exception as exc:  # the owner must outlive whatever ends the client's context
                log.warning(
                    "Redis at %s: client context ended (%s); retrying in %.1f s",
                    _redact(self._url),
                    _describe(exc),
                    delay,
                )
            self._first_try.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
