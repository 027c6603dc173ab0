"""`AmqpPublisher`: the RabbitMQ publisher actor (contract §9).

One task alone owns the aiormq channel (through its `BrokerLink`, which reconnects); `publish`
only drops a letter (event, reply future, deadline) into a bounded mailbox and waits for the
answer a short while. The actor publishes with `mandatory=True` and publisher confirms.

What `publish` returns, and what it promises:
  * ``"confirmed"``: the broker confirmed the event (an unroutable one too: the exchange took it,
    no queue was bound; it is logged with its message id, counted as ``unroutable``, not retried).
  * ``"outboxed"``: the broker did not confirm within the deadline (down, slow, refused), so the
    event waits in the durable outbox and is delivered, in order, once the broker is back. If
    the caller's wait runs out first, the letter is still the actor's: it publishes it or
    outboxes it, and never both on purpose. A publish that timed out is kept in flight and
    its late confirm removes the outbox entry instead of publishing the event again.
  * ``"logged"``: the last resort when the outbox itself failed: the full event is written to
    the error log, so nothing vanishes without a trace.
Delivery is at-least-once (a crash between a confirm and the outbox removal repeats an event);
consumers dedupe by `message_id`.

Ordering: while the outbox holds anything, new events go behind it rather than past it, and
the actor drains it oldest first, removing entries only after their confirm. The outbox is shared
by every process on one Redis, so the actor looks at it before each batch it would publish
directly: an event another process outboxed (its broker link down) is never overtaken by a later
event of this one.

Metrics: ``turnstile_events_published_total{outcome}`` counts what happened to an event at each
step: ``confirmed`` (by the broker, directly or from the outbox), ``outboxed`` (entered the
outbox), ``unroutable``, ``nacked`` (refused by the broker; stays in the outbox for a retry),
``logged``. An event that waited out an outage therefore counts ``outboxed`` then ``confirmed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, final

from aiormq.abc import AbstractChannel

from app.clients.amqp.confirms import send, settle
from app.clients.amqp.link import BrokerLink, ConnectionLost, LinkState, Opened
from app.clients.amqp.mailbox import Letter, Mailbox
from app.clients.amqp.metrics import OUTBOX_DEPTH, PUBLISHER_CONNECTED
from app.clients.amqp.outboxing import OutboxKeeper
from app.clients.amqp.publishing import (
    DEFAULT_CONFIRM_DEADLINE_S,
    DEFAULT_EXCHANGE,
    DEFAULT_FLUSH_DEADLINE_S,
    PublishOutcome,
)
from app.clients.outbox import Outbox
from app.models.events import Event
from app.untraced import untraced

log = logging.getLogger("turnstile.amqp.publisher")


@final
class AmqpPublisher:
    """The RabbitMQ publisher actor.

    Args:
        url: `amqp://` or `amqps://` URL.
        exchange: the durable topic exchange, declared at every (re)connect.
        outbox: where events wait while the broker cannot take them.
        mailbox_size: letters waiting for the actor; a full mailbox sends events to the outbox.
        reply_slack_s: how much longer than its deadline a caller waits for the actor's answer.
        connect_timeout_s: one connection attempt, channel and exchange declaration included.
        publish_timeout_s: how long a confirm may take while draining before the channel
            counts as broken.
        reconnect_base_s, reconnect_max_s: capped exponential backoff with full jitter.
        drain_batch: events pipelined per batch, from the mailbox or the outbox (a crash between
            confirm and removal repeats at most this many).
        idle_check_s: how often an idle actor looks for outbox entries (e.g. another worker's).
    """

    def __init__(
        self,
        url: str,
        exchange: str = DEFAULT_EXCHANGE,
        outbox: Outbox | None = None,
        *,
        mailbox_size: int = 1000,
        reply_slack_s: float = 0.25,
        connect_timeout_s: float = 5.0,
        publish_timeout_s: float = 5.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        drain_batch: int = 32,
        idle_check_s: float = 5.0,
    ) -> None:
        if outbox is None:
            msg = "AmqpPublisher needs an outbox (FileOutbox or RedisOutbox)"
            raise ValueError(msg)
        self.exchange = exchange
        self._link = BrokerLink(
            url,
            name=f"event publisher (exchange {exchange})",
            prepare=self._declare,
            confirms=True,
            connect_timeout_s=connect_timeout_s,
            reconnect_base_s=reconnect_base_s,
            reconnect_max_s=reconnect_max_s,
            on_state=self._set_state,
        )
        self._outbox = OutboxKeeper(outbox, retry_s=reconnect_max_s)
        self._mailbox = Mailbox(mailbox_size)
        self._reply_slack_s = reply_slack_s
        self._publish_timeout_s = publish_timeout_s
        self._reconnect_base_s = reconnect_base_s
        self._drain_batch = drain_batch
        self._idle_check_s = idle_check_s
        self._state = "disconnected"
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Future[None] | None = None  # resolved by stop()
        self._flush_until = 0.0
        self._backlog = False  # the outbox (may) hold something: new events go behind it
        self._inflight: dict[str, asyncio.Task[Any]] = {}  # event id -> publish awaiting its confirm
        self._depth_watch: asyncio.Task[None] | None = None

    # --- the caller's side -------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    async def ready(self) -> bool:
        return self._state == "connected"

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"amqp-publisher:{self.exchange}")
        self._depth_watch = asyncio.create_task(self._watch_depth(), name=f"outbox-depth:{self.exchange}")
        await self._outbox.update_depth()

    async def stop(self, flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S) -> None:
        task = self._task
        if task is None:
            return
        assert self._stopping is not None
        if not self._stopping.done():
            self._flush_until = asyncio.get_running_loop().time() + flush_deadline_s
            self._stopping.set_result(None)
        # Until the actor is done, `publish` keeps using the mailbox, so events published during
        # the flush stay behind the ones already queued.
        try:
            await asyncio.wait_for(asyncio.shield(task), flush_deadline_s + 2.0)
        except TimeoutError:
            log.warning("event publisher did not stop within its flush deadline; cancelling it")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._outbox_mailbox()
        finally:
            self._task = None
            if self._depth_watch is not None:
                self._depth_watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._depth_watch
                self._depth_watch = None

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        if self._task is None or self._task.done():
            # Not started or stopping: nobody would publish it, so it waits in the outbox.
            return await self._outbox.store(event)
        loop = asyncio.get_running_loop()
        letter = Letter(event, loop.time() + confirm_deadline_s, loop.create_future())
        if not self._mailbox.post(letter):
            log.warning("event publisher mailbox is full; outboxing event %s directly", event.id)
            return await self._outbox.store(event)
        try:
            return await asyncio.wait_for(asyncio.shield(letter.reply), confirm_deadline_s + self._reply_slack_s)
        except TimeoutError:
            # The actor still holds the letter and will publish or outbox it; it never drops it.
            return "outboxed"

    async def _watch_depth(self) -> None:
        """Without a broker link the actor reads the outbox only when it stores an event, and the
        shared outbox is drained by the other processes meanwhile: its depth is read again every
        `idle_check_s`, so the gauge (the maximum over processes) shows no backlog that is gone."""
        with untraced():
            while True:
                await asyncio.sleep(self._idle_check_s)
                if self._state != "connected":
                    await self._outbox.update_depth()

    # --- the actor ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._stopping is not None
        # The actor's own Redis work (the outbox's reads and writes) belongs to no request: each
        # event's producer span is made in its request, before the letter reaches the actor.
        with untraced():
            try:
                await self._link.run(self._session, self._stopping, wait=self._serve_until_stop)
            finally:
                await self._outbox_mailbox()
                for task in self._inflight.values():
                    task.cancel()
                self._inflight.clear()

    async def _declare(self, channel: AbstractChannel) -> None:
        await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)

    async def _session(self, opened: Opened) -> None:
        """Publish while the channel lives; return when the flush is over, raise when it is lost."""
        if self._stop_requested() and not self._mailbox.has_letter() and not await self._outbox.has_backlog():
            return  # stopping with nothing to flush
        channel = opened.channel
        try:
            self._backlog = await self._outbox.has_backlog()
            while True:
                if opened.is_lost():
                    msg = "connection closed"
                    raise ConnectionLost(msg)
                stopping = self._stop_requested()
                if stopping and self._flush_over():
                    break
                if self._backlog and self._outbox.usable():
                    await self._drain(channel)
                elif stopping and not self._mailbox.has_letter():
                    break  # flushed: nothing waits in the mailbox or the outbox
                else:
                    await self._publish_next(channel, opened)
        finally:
            for task in self._inflight.values():
                task.cancel()
            self._inflight.clear()

    async def _publish_next(self, channel: AbstractChannel, opened: Opened) -> None:
        """Publish the waiting letters directly (the outbox is empty), pipelined, settled in order."""
        getter = self._mailbox.getter()
        assert self._stopping is not None
        watched: list[asyncio.Future[Any]] = [getter, self._stopping, *opened.lost]
        await asyncio.wait(watched, timeout=self._idle_check_s, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            if not self._stop_requested() and not opened.is_lost():
                self._backlog = await self._outbox.has_backlog()
            return
        letters = [self._mailbox.take(), *self._mailbox.take_more(self._drain_batch - 1)]
        if await self._outbox.has_backlog():
            # Events of another process wait in the shared outbox (its broker link is down, or it
            # spilled them while Redis was): these may follow them (a change of the user they
            # created), so they go behind them, and the drain sends all in order.
            for letter in letters:
                await self._outbox_letter(letter)
            return
        # aiormq takes the channel lock in call order, so the wire order is the mailbox order. A
        # letter past its deadline is still sent: it goes to the outbox only if its confirm is late.
        loop = asyncio.get_running_loop()
        sends = [(letter, send(channel, self.exchange, letter.event)) for letter in letters]
        failure: ConnectionLost | None = None
        for letter, task in sends:
            if failure is None and not task.done():
                await asyncio.wait([task], timeout=max(0.0, letter.deadline - loop.time()))
            if not task.done():
                # Keep it in flight: a late confirm removes it from the outbox instead of a re-send.
                self._inflight[letter.event.id] = task
                await self._outbox_letter(letter)
                continue
            try:
                sent = settle(task, letter.event, self.exchange)
            except ConnectionLost as exc:
                failure = failure or exc
                sent = "nacked"
            if sent == "nacked":
                await self._outbox_letter(letter)
            else:
                letter.answer("confirmed")
        if failure is not None:
            raise failure

    async def _drain(self, channel: AbstractChannel) -> None:
        """Publish the oldest outbox entries, pipelined; remove each only after its confirm."""
        batch = await self._outbox.peek(self._drain_batch)
        if batch is None:
            return  # unreadable: new events go directly until it answers
        if not batch:
            self._backlog = False
            OUTBOX_DEPTH.set(0)
            return
        sends = [(event, self._resend(channel, event)) for event in batch]
        confirmed: list[str] = []
        nacked = False
        try:
            for event, task in sends:
                timeout = self._publish_timeout_s
                if self._stop_requested():
                    timeout = min(timeout, self._flush_until - asyncio.get_running_loop().time())
                if not await self._serve(task, max(timeout, 0.0), until_stop=False):
                    msg = f"no confirm within {timeout:.2f} s"
                    raise ConnectionLost(msg)
                if settle(task, event, self.exchange) == "nacked":
                    nacked = True  # it stays; the next batch retries it
                else:
                    confirmed.append(event.id)
        finally:
            await self._outbox.forget(confirmed)
        if nacked:
            await self._serve(None, self._reconnect_base_s, until_stop=False)

    def _resend(self, channel: AbstractChannel, event: Event) -> asyncio.Task[Any]:
        """The publish still awaiting this outbox entry's confirm, or a new one."""
        inflight = self._inflight.pop(event.id, None)
        return inflight if inflight is not None else send(channel, self.exchange, event)

    async def _serve_until_stop(self, waiting: asyncio.Future[Any] | None, for_s: float) -> bool:
        return await self._serve(waiting, for_s, until_stop=True)

    async def _serve(self, waiting: asyncio.Future[Any] | None, for_s: float, *, until_stop: bool) -> bool:
        """Wait for `waiting` (or just `for_s` seconds), outboxing letters that arrive meanwhile.

        Used whenever the actor cannot publish directly: connecting, backing off, draining.
        Returns whether `waiting` finished; with `until_stop`, returns early on `stop()`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + for_s
        stopper = self._stopping if until_stop else None
        while waiting is None or not waiting.done():
            remaining = deadline - loop.time()
            if remaining <= 0 or (stopper is not None and stopper.done()):
                break
            watched = [w for w in (waiting, stopper, self._mailbox.getter()) if w is not None]
            await asyncio.wait(watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if self._mailbox.has_letter(taken_only=True):
                await self._outbox_letter(self._mailbox.take())
        return waiting is not None and waiting.done()

    # --- mailbox and outbox ------------------------------------------------------------------

    async def _outbox_letter(self, letter: Letter) -> None:
        letter.answer(await self._outbox.store(letter.event))
        self._backlog = True

    async def _outbox_mailbox(self) -> None:
        """Everything still in the mailbox goes to the outbox (stop, or the actor's end)."""
        for letter in self._mailbox.empty_out():
            await self._outbox_letter(letter)

    def _stop_requested(self) -> bool:
        return self._stopping is None or self._stopping.done()

    def _flush_over(self) -> bool:
        return asyncio.get_running_loop().time() >= self._flush_until

    def _set_state(self, state: LinkState) -> None:
        self._state = state
        PUBLISHER_CONNECTED.set(1 if state == "connected" else 0)
