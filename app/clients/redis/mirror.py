"""Local copies of hot Redis keys, kept exact by Redis's own invalidation pushes.

The cached read makes two GETs per request (the revocation cut-off, the cache entry), and each
coredis 6 command costs ~10% of the request's CPU. `LocalMirror` answers a GET of a key it has
read before from process memory, and drops the copy when Redis says the key changed:

- One dedicated RESP3 connection runs ``CLIENT TRACKING ON BCAST PREFIX …`` for the mirrored
  prefixes, so every write to such a key, by any client of the server (every instance), pushes
  an ``invalidate`` message to this process; a flush pushes a null, which drops everything.
  Keys that expire or are evicted in Redis are pushed too.
- A copy is only served while that connection is up and answers a PING every
  `ping_interval_s`; when it drops (Redis restarts, a failover, a network fault) or a PING
  times out, every copy is dropped at once and reads go to Redis again until the connection
  is back. A silently partitioned connection is therefore trusted for at most
  ``ping_interval_s + timeout_s``.
- A read's reply and an invalidation travel on different connections, so a read registers a
  ticket before it is sent; an invalidation (or a reset) of that key cancels the ticket, and
  a reply whose ticket is gone is returned but not kept.
- This process's own writes drop the local copy synchronously (`invalidate`), so a PATCH
  followed by a GET on the same instance never waits for the push.

A missing key is mirrored too (the usual answer of the revocation check). coredis's own
`TrackingCache` does not fit: it never serves a cached nil, never caches a read made under
`decoding(False)` (the cache step's), and consults its cache only after taking a pool
connection, which is most of the per-command cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import anyio

from app.clients.redis.patches import close_buffers
from app.clients.retry import Backoff
from app.untraced import untraced

log = logging.getLogger("turnstile.redis")

MISSING: Final = object()
_BACKOFF_BASE_S: Final = 0.2
_BACKOFF_MAX_S: Final = 5.0


class LocalMirror:
    """Copies of the values of keys under `prefixes`, valid while the tracking connection lives.

    Args:
        prefixes: key prefixes to mirror; none may be a prefix of another (Redis refuses that).
        max_entries: the bound on copies kept (least recently used go first).
        ping_interval_s: how often the tracking connection is checked with PING.
        check_primary: check with ROLE instead, and stop when the node is no longer the
            primary (Sentinel: after a failover the old primary may stay reachable).
    """

    def __init__(
        self,
        prefixes: tuple[str, ...],
        *,
        max_entries: int = 10_000,
        ping_interval_s: float = 1.0,
        check_primary: bool = False,
    ) -> None:
        if not prefixes or any(a != b and b.startswith(a) for a in prefixes for b in prefixes):
            msg = f"mirrored prefixes must be given and must not overlap: {prefixes!r}"
            raise ValueError(msg)
        self.prefixes = prefixes
        self._max_entries = max_entries
        self._ping_interval_s = ping_interval_s
        self._check_primary = check_primary
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._tickets: dict[str, object] = {}
        self._connection: Any = None  # the tracking connection while tracking is on
        self._went_live = False
        self._watchers: list[tuple[str, Callable[[list[str]], None]]] = []

    @property
    def live(self) -> bool:
        connection = self._connection
        return connection is not None and bool(connection.usable)

    def __len__(self) -> int:
        return len(self._entries)

    def mirrors(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def lookup(self, key: str) -> Any:
        """The local copy of `key` (None for a missing key), or `MISSING`."""
        if not self.live:
            return MISSING
        value = self._entries.get(key, MISSING)
        if value is not MISSING:
            self._entries.move_to_end(key)
        return value

    def begin(self, key: str) -> object | None:
        """A ticket for a read of `key` about to be sent (None: the reply will not be kept)."""
        if not self.live or not self.mirrors(key):
            return None
        ticket = object()
        self._tickets[key] = ticket
        return ticket

    def complete(self, key: str, ticket: object | None, value: Any) -> None:
        """Keep `value` as read under `ticket` unless the key changed since the read was sent."""
        if ticket is None or self._tickets.get(key) is not ticket:
            return
        del self._tickets[key]
        if not self.live:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def abandon(self, key: str, ticket: object | None) -> None:
        """The read under `ticket` failed."""
        if ticket is not None and self._tickets.get(key) is ticket:
            del self._tickets[key]

    def invalidate(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)
            self._tickets.pop(key, None)

    def reset(self) -> None:
        self._entries.clear()
        self._tickets.clear()

    def watch(self, prefix: str, changed: Callable[[list[str]], None]) -> None:
        """Call `changed` with the keys under `prefix` (a mirrored one, or under one) that Redis
        says changed, written by any client: what another instance did, heard within the push's
        latency (the auth plugin learns of sessions ended elsewhere). Not called for a flush."""
        if not self.mirrors(prefix):
            msg = f"{prefix!r} is under no mirrored prefix: Redis pushes nothing for it"
            raise ValueError(msg)
        self._watchers.append((prefix, changed))

    # --- the tracking connection --------------------------------------------------------------

    async def run(self, pool: Any, *, timeout_s: float) -> None:
        """Keep a tracking connection on `pool`'s server until cancelled; reconnect with backoff."""
        backoff = Backoff(_BACKOFF_BASE_S, _BACKOFF_MAX_S)
        with untraced():
            while True:
                self._went_live = False
                try:
                    await self._track(pool, timeout_s=timeout_s)
                except Exception as exc:  # any failure only means "no local copies until tracking is back"
                    if self._went_live:
                        backoff.reset()
                    # Redis's own outage is logged once by its health check; this is a detail of it.
                    log.debug("Redis invalidation tracking ended (%s: %s); local copies dropped",
                              type(exc).__name__, exc)
                await asyncio.sleep(backoff.next_s())

    async def _track(self, pool: Any, *, timeout_s: float) -> None:
        # Built outside the pool's slots: a leased connection that dies never returns its slot.
        connection = await pool._construct_connection()
        try:
            async with anyio.create_task_group() as group:
                with anyio.fail_after(timeout_s * 2):
                    await group.start(connection.run)
                    args: list[Any] = [b"TRACKING", b"ON", b"BCAST"]
                    for prefix in self.prefixes:
                        args += [b"PREFIX", prefix]
                    if await connection.create_request(b"CLIENT", *args, decode=False) != b"OK":
                        msg = "CLIENT TRACKING was refused"
                        raise ConnectionError(msg)
                    await self._check(connection)
                self.reset()
                self._connection = connection
                self._went_live = True
                group.start_soon(self._keepalive, connection, timeout_s)
                async for message in connection.push_messages:
                    self._on_push(message)
                msg = "the tracking connection closed"
                raise ConnectionError(msg)
        finally:
            self._connection = None
            self.reset()
            with contextlib.suppress(Exception):
                connection.invalidate()
            close_buffers(connection)

    async def _keepalive(self, connection: Any, timeout_s: float) -> None:
        while True:
            await anyio.sleep(self._ping_interval_s)
            with anyio.fail_after(timeout_s):
                await self._check(connection)

    async def _check(self, connection: Any) -> None:
        if not self._check_primary:
            await connection.create_request(b"PING", decode=False)
            return
        role = await connection.create_request(b"ROLE", decode=False)
        if not role or role[0] != b"master":
            msg = "the tracked node is no longer the primary"
            raise ConnectionError(msg)

    def _on_push(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 2 or _text(message[0]) != "invalidate":
            return
        keys = message[1]
        if keys is None:  # FLUSHDB / FLUSHALL
            self.reset()
            return
        changed = [_text(key) for key in keys]
        self.invalidate(*changed)
        for prefix, watcher in self._watchers:
            under = [key for key in changed if key.startswith(prefix)]
            if under:
                try:
                    watcher(under)
                except Exception:  # a watcher's bug must not stop the pushes that keep copies exact
                    log.exception("a watcher of Redis's invalidation pushes failed")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
