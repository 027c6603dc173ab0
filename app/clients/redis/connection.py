"""`RedisConnection`: the one Redis client per process, shared by the cache, token state, rate
limits and outbox.

`start()` never fails because Redis is down: the service boots degraded and the same object
recovers when Redis comes back. Callers use `connection.client` and wrap commands in
`redis_errors()` to get one exception type, `RedisUnavailable`, for "Redis is down or too
slow". Keys read on every request go through `connection.get`, which answers from a
`LocalMirror` (app/clients/redis/mirror.py) when the connection was built with
`mirror_prefixes` and Redis's invalidation pushes are flowing.

`connection.health` knows whether Redis answers, node by node (app/clients/redis/health.py):
`/readyz` shows it, and it logs each outage once and each recovery once. `connection.pending`
keeps the writes that could not be made during an outage and makes them after each check
(app/clients/redis/pending.py).

The pieces, each in its own module: the URL forms (`urls`), the client factory (`factory`),
coredis's patches (`patches`, and `cluster` for the cluster pool), the task owning the client
(`owner`), the local mirror (`mirror`), the health checks (`health`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import coredis

from app.clients.redis.cluster import ClusterPool
from app.clients.redis.errors import describe
from app.clients.redis.factory import BuiltClient, Timeouts, make_client
from app.clients.redis.health import DEFAULT_INTERVAL_S, HealthState, RedisHealth
from app.clients.redis.mirror import MISSING, LocalMirror
from app.clients.redis.owner import ClientOwner, Companion
from app.clients.redis.pending import PendingWrites
from app.clients.redis.rollback import RollbackWatch
from app.clients.redis.urls import RedisTarget, Topology, parse_redis_url, redact_url

T = TypeVar("T")


class RedisConnection:
    """The process's one coredis client, kept usable across Redis outages.

    Args:
        url: a `REDIS_URL` in one of the forms of app/clients/redis/urls.py.
        socket_timeout_s: the longest wait for a reply (and for the connect handshake).
        connect_timeout_s: the longest wait for a TCP (and TLS) connect.
        mirror_prefixes: key prefixes whose values are kept in process memory while Redis's
            invalidation pushes flow (not on a cluster: its keys live on many nodes, each of
            which would need its own tracking connection).
        mirror_max_entries: the bound on mirrored copies.
        health_interval_s: the time between two health checks.

    Raises:
        ValueError: the URL's scheme or shape is not one this package supports.

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
        health_interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._url = url
        self._target: RedisTarget = parse_redis_url(url)
        self._timeouts = Timeouts(socket_s=socket_timeout_s, connect_s=connect_timeout_s)
        self._owner: ClientOwner | None = None
        self._slow_pings: set[asyncio.Future[Any]] = set()
        self.health = RedisHealth(f"Redis ({self.topology})", self._probe, interval_s=health_interval_s)
        self.pending = PendingWrites()
        self.health.on_checked.append(self._replay_pending)
        self._checking: asyncio.Task[None] | None = None
        self.mirror: LocalMirror | None = (
            LocalMirror(
                mirror_prefixes, max_entries=mirror_max_entries, check_primary=self._target.topology == "sentinel"
            )
            if mirror_prefixes and self._target.topology != "cluster"
            else None
        )
        # Counts the writes whose loss matters; an app runs its check while it serves (§9a).
        self.rollbacks = RollbackWatch(self)

    @property
    def url(self) -> str:
        return self._url

    @property
    def topology(self) -> Topology:
        """``standalone``, ``sentinel`` or ``cluster``: what the URL names."""
        return self._target.topology

    async def get(self, key: str, *, decode: bool = True) -> Any:
        """GET `key` (``str``, or ``bytes`` when not `decode`), from the local mirror when it can.

        Raises coredis's errors like the client does (wrap it in `redis_errors()`). Whoever
        writes a mirrored key through this connection calls `invalidate_local` after the write.
        """
        value, _ = await self.read_mirrored(key, _get_text if decode else _get_bytes, decode=decode)
        return value

    async def read_mirrored(
        self, key: str, read: Callable[[Any, str], Awaitable[tuple[Any, T]]], *, decode: bool = False,
        fresh: bool = False,
    ) -> tuple[Any, T | None]:
        """`key`'s value from the local mirror (and None), or what `read(client, key)` answers:
        the value it read from `key` (``str``, or ``bytes`` when not `decode`; kept in the mirror)
        and anything else (a script that also claims a lease answers more than a GET). `fresh`:
        ask Redis even when the mirror has a copy. Raises coredis's errors like the client does."""
        mirror = self.mirror
        ticket = None
        if mirror is not None:
            if not fresh:
                entry = mirror.lookup(key)
                if entry is not MISSING and entry[0] is decode:
                    return entry[1], None
            ticket = mirror.begin(key)
        try:
            value, extra = await read(self.client, key)
        except BaseException:
            if mirror is not None:
                mirror.abandon(key, ticket)
            raise
        if mirror is not None:
            mirror.complete(key, ticket, (decode, value))
        return value, extra

    def invalidate_local(self, *keys: str) -> None:
        """Drop this process's copies of `keys` (it has just written them)."""
        if self.mirror is not None:
            self.mirror.invalidate(*keys)

    def answers(self, key: str) -> bool:
        """Whether the node holding `key` answered the last health check: on a cluster with a
        master down, the other masters' keys still answer, so a writer free to choose its key
        (a new session's) picks one that does."""
        if self._target.topology != "cluster":
            return self.health.state != "down"
        owner = self._owner
        pool = owner.built.client.connection_pool if owner is not None and owner.held else None
        if not isinstance(pool, ClusterPool) or not pool.primaries():
            return False
        return pool.holder(key) not in pool.down

    @property
    def client(self) -> coredis.Redis[str]:
        """The shared client (``decode_responses=True``); usable from any task while started.

        Read it where you use it rather than keeping it: it is only valid between start and stop.
        """
        if self._owner is None:
            msg = "RedisConnection is not started"
            raise RuntimeError(msg)
        # A cluster client is a `RedisCluster[str]`: the same command surface, typed apart.
        return cast("coredis.Redis[str]", self._owner.built.client)

    @property
    def started(self) -> bool:
        return self._owner is not None

    async def start(self) -> None:
        """Build the client, start the task that owns it and check its health once; returns
        even when Redis is down."""
        if self._owner is not None:
            msg = "RedisConnection is already started"
            raise RuntimeError(msg)
        built = make_client(self._url, self._target, self._timeouts)
        self._owner = ClientOwner(built, name=f"redis-owner {redact_url(self._url)}", companions=self._companions())
        await self._owner.start()
        await self.health.check()
        self._checking = asyncio.create_task(self.health.run(), name="redis-health")

    async def stop(self) -> None:
        """Stop the health checks, leave the client's context in its owner task and wait for
        it; idempotent."""
        checking, self._checking = self._checking, None
        if checking is not None:
            checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checking
        owner, self._owner = self._owner, None
        if owner is not None:
            await owner.stop()

    async def ping(self) -> bool:
        """True when Redis answers PING within the timeouts; never raises.

        The command is not cancelled on timeout (see app/clients/redis/patches.py): it is left
        to finish by itself within coredis's own timeouts.
        """
        if self._owner is None:
            return False
        task = asyncio.ensure_future(self._ping())
        bound = self._timeouts.connect_s + 2 * self._timeouts.socket_s
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

    async def _replay_pending(self, state: HealthState) -> None:
        if len(self.pending) and state != "down" and self._owner is not None:
            await self.pending.replay()

    async def _probe(self) -> dict[str, str | None]:
        """One round of health checks: each node (each master of a cluster), and why it does
        not answer (None when it does)."""
        owner = self._owner
        if self._target.topology == "cluster":
            pool = owner.built.client.connection_pool if owner is not None and owner.held else None
            if not isinstance(pool, ClusterPool) or not pool.primaries():
                return {f"{host}:{port}": "cluster not reachable" for host, port in self._target.nodes}
            primaries = pool.primaries()
            answers = await asyncio.gather(*(pool.probe(address) for address in primaries))
            return {f"{host}:{port}": why for (host, port), why in zip(primaries, answers, strict=True)}
        return {self._node_name(): await self._ping_reason()}

    async def _ping_reason(self) -> str | None:
        if self._owner is None:
            return "not started"
        task = asyncio.ensure_future(self._answer())
        bound = self._timeouts.connect_s + 2 * self._timeouts.socket_s
        done, _ = await asyncio.wait({task}, timeout=bound)
        if task not in done:
            self._slow_pings.add(task)  # not cancelled (see ping); it ends within coredis's timeouts
            task.add_done_callback(self._slow_pings.discard)
            return f"no answer within {bound:.1f} s"
        return task.result()

    async def _answer(self) -> str | None:
        try:
            await self.client.ping()
        except Exception as exc:  # the health check reports, it does not raise
            return describe(exc)
        return None

    def _node_name(self) -> str:
        if self._target.topology == "sentinel":
            return f"primary of {self._target.service}"
        parts = urlsplit(self._url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"

    def _companions(self) -> list[Companion]:
        """What runs beside the client while its context is held."""
        mirror = self.mirror
        if mirror is None:
            return []
        timeout_s = self._timeouts.pool_s

        async def track(built: BuiltClient) -> None:
            await mirror.run(built.client.connection_pool, timeout_s=timeout_s)

        return [track]


async def _get_text(client: Any, key: str) -> tuple[Any, None]:
    return await client.get(key), None


async def _get_bytes(client: Any, key: str) -> tuple[Any, None]:
    with client.decoding(False) as raw:
        return await raw.get(key), None
