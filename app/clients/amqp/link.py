"""`BrokerLink`: one connection and channel to RabbitMQ, opened again with backoff when lost.

aiormq does not reconnect (aio-pika's "robust" layer lives above it), so the publisher and
every consumer each hold a `BrokerLink`: it opens a connection and a channel, lets its owner
prepare the channel (declare the topology, start consuming), hands it to the owner's session,
and when the session ends because the connection was lost, opens a new one — at once the
first time, then with capped exponential backoff and full jitter.

An outage is two log lines per link, whatever its length: a WARNING when the broker cannot
be reached (or the connection is lost), an INFO when it answers again, saying how long it
was away. The failed attempts in between are DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, final

import aiormq
import attrs
from aiormq.abc import AbstractChannel, AbstractConnection

from app.clients.retry import Backoff

log = logging.getLogger("turnstile.amqp.link")

# What a broken or closed connection raises out of aiormq: its own errors, the socket's, a
# closed channel's RuntimeError subclass, and a timeout on the way.
CONNECTION_ERRORS: Final = (aiormq.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError)

LinkState = Literal["connecting", "connected", "disconnected"]


class ConnectionLost(Exception):
    """The channel is gone or stopped answering; a session raises it to be reconnected."""


@final
@attrs.frozen
class Opened:
    """A live connection and its one channel."""

    connection: AbstractConnection
    channel: AbstractChannel

    @property
    def lost(self) -> list[asyncio.Future[Any]]:
        """Futures that finish when the connection or the channel closes."""
        return [self.connection.closing, self.channel.closing]

    def is_lost(self) -> bool:
        return any(future.done() for future in self.lost)

    async def close(self) -> None:
        for future in self.lost:
            future.cancel()
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.connection.close()


# `wait(task, for_s)`: wait until `task` (None: nothing) is done or `for_s` seconds passed, or
# stop was asked; True when `task` finished. The publisher's waiter outboxes events meanwhile.
Waiter = Callable[[asyncio.Future[Any] | None, float], Awaitable[bool]]
Session = Callable[[Opened], Awaitable[None]]
Prepare = Callable[[AbstractChannel], Awaitable[None]]


@final
class BrokerLink:
    """Opens and reopens the connection for one owner (the publisher, or one consumer).

    Args:
        url: `amqp://` or `amqps://` URL.
        name: who owns the link, for the log (``"event publisher (exchange users)"``).
        prepare: awaited with each new channel, before the session gets it.
        confirms: open the channel with publisher confirms.
        connect_timeout_s: one attempt: connection, channel and `prepare` together.
        reconnect_base_s, reconnect_max_s: the backoff between failed attempts.
        on_state: told each state change (for a gauge or the owner's own state).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        prepare: Prepare,
        confirms: bool = True,
        connect_timeout_s: float = 5.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        on_state: Callable[[LinkState], None] | None = None,
    ) -> None:
        self._url = url
        self.name = name
        self._prepare = prepare
        self._confirms = confirms
        self.connect_timeout_s = connect_timeout_s
        self._backoff = Backoff(reconnect_base_s, reconnect_max_s)
        self._on_state = on_state
        self._down_since: float | None = None
        self._connected_once = False
        self.state: LinkState = "disconnected"

    async def run(self, session: Session, stopping: asyncio.Future[None], *, wait: Waiter | None = None) -> None:
        """Open, run `session`, repeat, until `stopping` is done; return with no connection open.

        The session returns when it is done (stop) and raises `ConnectionLost` (or an aiormq
        error) when the connection broke: then the link reconnects.
        """
        waiter = wait or _plain_waiter(stopping)
        try:
            while not stopping.done():
                opened = await self._connect(waiter)
                if opened is None:
                    await waiter(None, self._backoff.next_s())
                    continue
                self._backoff.reset()
                await self._session(session, opened)
        finally:
            self._set_state("disconnected")

    async def _session(self, session: Session, opened: Opened) -> None:
        self._set_state("connected")
        self._announce_up()
        try:
            await session(opened)
        except (ConnectionLost, *CONNECTION_ERRORS) as exc:
            self._announce_down(f"lost its connection ({exc!r})")
        except Exception:  # a bug in the session must not end the link; it reconnects
            log.exception("%s: session failed; reconnecting", self.name)
            self._down_since = self._down_since or time.monotonic()
        finally:
            self._set_state("disconnected")
            await opened.close()

    async def _connect(self, wait: Waiter) -> Opened | None:
        self._set_state("connecting")
        attempt = asyncio.create_task(self._open())
        if not await wait(attempt, self.connect_timeout_s + 1.0):
            attempt.cancel()
        await asyncio.wait([attempt])  # unlike `await attempt`, keeps our own cancellation apart
        if attempt.cancelled():
            self._set_state("disconnected")
            return None
        exc = attempt.exception()
        if exc is not None:
            self._set_state("disconnected")
            self._announce_down(f"cannot connect ({exc!r})")
            return None
        return attempt.result()

    async def _open(self) -> Opened:
        async with asyncio.timeout(self.connect_timeout_s):
            connection = await aiormq.connect(self._url)
            try:
                channel = await connection.channel(publisher_confirms=self._confirms)
                await self._prepare(channel)
            except BaseException:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await connection.close()
                raise
        return Opened(connection, channel)

    def _announce_down(self, what: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s: %s; retrying with backoff until it answers", self.name, what)
        else:
            log.debug("%s: %s", self.name, what)

    def _announce_up(self) -> None:
        if self._down_since is not None:
            log.info("%s: broker reachable again after %.1f s", self.name, time.monotonic() - self._down_since)
            self._down_since = None
        elif not self._connected_once:
            log.info("%s: connected", self.name)
        self._connected_once = True

    def _set_state(self, state: LinkState) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)


def _plain_waiter(stopping: asyncio.Future[None]) -> Waiter:
    async def wait(task: asyncio.Future[Any] | None, for_s: float) -> bool:
        watched = [f for f in (task, stopping) if f is not None]
        await asyncio.wait(watched, timeout=for_s, return_when=asyncio.FIRST_COMPLETED)
        return task is not None and task.done()

    return wait
