"""Publishing domain events (contract §9): a broker-owning actor, and the embedded log-file stand-in.

`AmqpPublisher` is an actor. One task alone owns the aiormq connection and channel; `publish`
only drops a letter (event, reply future, deadline) into a bounded mailbox and waits for the
answer a short while. The actor publishes with `mandatory=True` and publisher confirms, and it
owns reconnection, because aiormq has none (aio-pika's "robust" layer lives above it).

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
the actor drains it oldest first, removing entries only after their confirm.

Metrics: ``turnstile_events_published_total{outcome}`` counts what happened to an event at each
step: ``confirmed`` (by the broker, directly or from the outbox), ``outboxed`` (entered the
outbox), ``unroutable``, ``nacked`` (refused by the broker; stays in the outbox for a retry),
``logged``. An event that waited out an outage therefore counts ``outboxed`` then ``confirmed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Final, Literal, Protocol, final

import aiormq
import attrs
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic
from prometheus_client import Counter, Gauge

from app.clients.outbox import Outbox
from app.clients.retry import backoff_s
from app.models.events import Event

log = logging.getLogger(__name__)

PublishOutcome = Literal["confirmed", "outboxed", "logged"]
DEFAULT_EXCHANGE: Final = "users"
DEFAULT_CONFIRM_DEADLINE_S: Final = 0.5
DEFAULT_FLUSH_DEADLINE_S: Final = 5.0

EVENTS_PUBLISHED = Counter(
    "turnstile_events_published_total",
    "Domain events by what happened to them: confirmed, outboxed, unroutable, nacked, logged.",
    ["outcome"],
)
OUTBOX_DEPTH = Gauge("turnstile_outbox_depth", "Events waiting in the durable outbox for the broker.")
PUBLISHER_CONNECTED = Gauge("turnstile_publisher_connected", "1 while the event publisher has a broker channel.")

# What a broken or closed connection raises out of aiormq: its own errors, the socket's, a
# closed channel's RuntimeError subclass, and a timeout on the way.
CONNECTION_ERRORS: Final = (aiormq.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError)


class Publisher(Protocol):
    """Publishes domain events; implementations decide where they go."""

    @property
    def state(self) -> str:
        """``connected``, ``connecting``, ``disconnected`` or ``embedded``."""

    async def start(self) -> None: ...

    async def stop(self, flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S) -> None:
        """Flush what can be flushed within the deadline; what is left stays in the outbox."""

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        """Hand `event` over; never raises for a broker problem (see the module docstring)."""

    async def ready(self) -> bool:
        """Whether events currently reach their destination directly."""


@attrs.define
class _Letter:
    event: Event
    deadline: float  # loop time after which the actor outboxes rather than publishes
    reply: asyncio.Future[PublishOutcome]

    def answer(self, outcome: PublishOutcome) -> None:
        if not self.reply.done():
            self.reply.set_result(outcome)


class _ConnectionLost(Exception):
    """The channel is gone or stopped answering; reconnect."""


_Sent = Literal["confirmed", "unroutable", "nacked"]


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
        self._url = url
        self.exchange = exchange
        self._outbox = outbox
        self._mailbox: asyncio.Queue[_Letter] = asyncio.Queue(maxsize=mailbox_size)
        self._reply_slack_s = reply_slack_s
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._reconnect_base_s = reconnect_base_s
        self._reconnect_max_s = reconnect_max_s
        self._drain_batch = drain_batch
        self._idle_check_s = idle_check_s
        self._state = "disconnected"
        self._task: asyncio.Task[None] | None = None
        self._getter: asyncio.Task[_Letter] | None = None
        self._stopping: asyncio.Future[None] | None = None  # resolved by stop()
        self._flush_until = 0.0
        self._backlog = False  # the outbox (may) hold something: new events go behind it
        self._outbox_retry_at = 0.0
        self._inflight: dict[str, asyncio.Task[Any]] = {}  # event id -> publish awaiting its confirm

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
        await self._update_depth()

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

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        if self._task is None or self._task.done():
            # Not started or stopping: nobody would publish it, so it waits in the outbox.
            return await self._store(event)
        loop = asyncio.get_running_loop()
        letter = _Letter(event, loop.time() + confirm_deadline_s, loop.create_future())
        try:
            self._mailbox.put_nowait(letter)
        except asyncio.QueueFull:
            log.warning("event publisher mailbox is full; outboxing event %s directly", event.id)
            return await self._store(event)
        try:
            return await asyncio.wait_for(asyncio.shield(letter.reply), confirm_deadline_s + self._reply_slack_s)
        except TimeoutError:
            # The actor still holds the letter and will publish or outbox it; it never drops it.
            return "outboxed"

    # --- the actor ---------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._stop_requested():
                opened = await self._connect(attempt)
                if opened is not None:
                    attempt = 0
                    try:
                        await self._session(*opened)
                    except Exception:  # a bug or an outbox failure must not kill the actor
                        log.exception("event publisher session failed (exchange %s)", self.exchange)
                    else:
                        continue
                self._set_state("disconnected")
                delay = backoff_s(attempt, base_s=self._reconnect_base_s, max_s=self._reconnect_max_s)
                attempt += 1
                await self._serve(None, delay, until_stop=True)
        finally:
            self._set_state("disconnected")
            await self._outbox_mailbox()
            for task in self._inflight.values():
                task.cancel()
            self._inflight.clear()

    async def _connect(self, attempt_no: int) -> tuple[AbstractConnection, AbstractChannel] | None:
        self._set_state("connecting")
        attempt = asyncio.create_task(self._open())
        if not await self._serve(attempt, self._connect_timeout_s + 1.0, until_stop=True):
            attempt.cancel()
        await asyncio.wait([attempt])  # unlike `await attempt`, keeps our own cancellation apart
        if attempt.cancelled():
            return None
        exc = attempt.exception()
        if exc is not None:
            # Once per outage and then every tenth try: the backoff already caps the rate.
            level = logging.WARNING if attempt_no % 10 == 0 else logging.DEBUG
            log.log(level, "event broker unreachable (exchange %s, try %d): %r", self.exchange, attempt_no + 1, exc)
            return None
        opened = attempt.result()
        if self._stop_requested() and not self._has_letter() and not await self._has_backlog():
            with contextlib.suppress(*CONNECTION_ERRORS):
                await opened[0].close()
            return None
        return opened

    async def _open(self) -> tuple[AbstractConnection, AbstractChannel]:
        async with asyncio.timeout(self._connect_timeout_s):
            connection = await aiormq.connect(self._url)
            try:
                channel = await connection.channel(publisher_confirms=True)
                await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            except BaseException:
                await connection.close()
                raise
        return connection, channel

    async def _session(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        """Publish while the channel lives; return when it is lost or the flush is over."""
        lost = [connection.closing, channel.closing]
        self._set_state("connected")
        log.info("event publisher connected (exchange %s)", self.exchange)
        try:
            self._backlog = await self._has_backlog()
            while True:
                if any(f.done() for f in lost):
                    msg = "connection closed"
                    raise _ConnectionLost(msg)
                stopping = self._stop_requested()
                if stopping and self._flush_over():
                    break
                if self._backlog and self._outbox_usable():
                    await self._drain(channel)
                elif stopping and not self._has_letter():
                    break  # flushed: nothing waits in the mailbox or the outbox
                else:
                    await self._publish_next(channel, lost)
        except (_ConnectionLost, *CONNECTION_ERRORS) as exc:
            log.warning("event publisher lost its channel (exchange %s): %r", self.exchange, exc)
        finally:
            self._set_state("disconnected")
            for future in lost:
                future.cancel()
            for task in self._inflight.values():
                task.cancel()
            self._inflight.clear()
            with contextlib.suppress(*CONNECTION_ERRORS):
                await connection.close()

    async def _publish_next(self, channel: AbstractChannel, lost: list[asyncio.Future[Any]]) -> None:
        """Publish the waiting letters directly (the outbox is empty), pipelined, settled in order."""
        getter = self._get_letter()
        assert self._stopping is not None
        watched: list[asyncio.Future[Any]] = [getter, self._stopping, *lost]
        await asyncio.wait(watched, timeout=self._idle_check_s, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            if not self._stop_requested() and not any(f.done() for f in lost):
                self._backlog = await self._has_backlog()
            return
        letters = [self._take_letter()]
        while len(letters) < self._drain_batch and not self._mailbox.empty():
            letters.append(self._mailbox.get_nowait())
        # aiormq takes the channel lock in call order, so the wire order is the mailbox order. A
        # letter past its deadline is still sent: it goes to the outbox only if its confirm is late.
        loop = asyncio.get_running_loop()
        sends = [(letter, self._send(channel, letter.event)) for letter in letters]
        failure: _ConnectionLost | None = None
        for letter, task in sends:
            if failure is None and not task.done():
                await asyncio.wait([task], timeout=max(0.0, letter.deadline - loop.time()))
            if not task.done():
                # Keep it in flight: a late confirm removes it from the outbox instead of a re-send.
                self._inflight[letter.event.id] = task
                await self._outbox_letter(letter)
                continue
            try:
                sent = self._result(task, letter.event)
            except _ConnectionLost as exc:
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
        try:
            batch = await self._outbox.peek(self._drain_batch)
        except Exception:  # any outbox backend's failure; the actor must survive it
            log.exception("event outbox unreadable; publishing new events directly for now")
            self._outbox_retry_at = asyncio.get_running_loop().time() + self._reconnect_max_s
            return
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
                    raise _ConnectionLost(msg)
                if self._result(task, event) == "nacked":
                    nacked = True  # it stays; the next batch retries it
                else:
                    confirmed.append(event.id)
        finally:
            await self._forget(confirmed)
        if nacked:
            await self._serve(None, self._reconnect_base_s, until_stop=False)

    def _resend(self, channel: AbstractChannel, event: Event) -> asyncio.Task[Any]:
        """The publish still awaiting this outbox entry's confirm, or a new one."""
        inflight = self._inflight.pop(event.id, None)
        return inflight if inflight is not None else self._send(channel, event)

    def _send(self, channel: AbstractChannel, event: Event) -> asyncio.Task[Any]:
        task = asyncio.create_task(
            channel.basic_publish(
                event.to_json(),
                exchange=self.exchange,
                routing_key=event.type,
                properties=event.amqp_properties(),
                mandatory=True,
            )
        )
        task.add_done_callback(_retrieve)
        return task

    def _result(self, task: asyncio.Task[Any], event: Event) -> _Sent:
        """What a finished publish means; raises `_ConnectionLost` for a broken channel."""
        try:
            frame = task.result()
        except aiormq.exceptions.PublishError as exc:
            log.warning(
                "event %s (%s) is unroutable on exchange %s: no queue is bound; not retried: %s",
                event.id,
                event.type,
                self.exchange,
                exc,
                extra={"request_id": event.request_id},
            )
            EVENTS_PUBLISHED.labels("unroutable").inc()
            return "unroutable"
        except aiormq.exceptions.DeliveryError:
            frame = Basic.Nack()
        except asyncio.CancelledError as exc:
            raise _ConnectionLost from exc
        except CONNECTION_ERRORS as exc:
            raise _ConnectionLost from exc
        if isinstance(frame, Basic.Nack | Basic.Reject):
            log.warning("broker refused event %s (nack); it stays in the outbox", event.id)
            EVENTS_PUBLISHED.labels("nacked").inc()
            return "nacked"
        EVENTS_PUBLISHED.labels("confirmed").inc()
        return "confirmed"

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
            watched = [w for w in (waiting, stopper, self._get_letter()) if w is not None]
            await asyncio.wait(watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if self._has_letter(taken_only=True):
                await self._outbox_letter(self._take_letter())
        return waiting is not None and waiting.done()

    # --- mailbox and outbox ------------------------------------------------------------------

    def _get_letter(self) -> asyncio.Task[_Letter]:
        # One long-lived getter: an abandoned `Queue.get()` could swallow a letter.
        if self._getter is None:
            self._getter = asyncio.create_task(self._mailbox.get())
        return self._getter

    def _has_letter(self, *, taken_only: bool = False) -> bool:
        """Whether a letter is waiting: already taken by the getter, or (unless taken_only) queued."""
        taken = self._getter is not None and self._getter.done() and not self._getter.cancelled()
        return taken or (not taken_only and not self._mailbox.empty())

    def _take_letter(self) -> _Letter:
        assert self._getter is not None
        assert self._getter.done()
        getter, self._getter = self._getter, None
        return getter.result()

    async def _outbox_letter(self, letter: _Letter) -> None:
        letter.answer(await self._store(letter.event))
        self._backlog = True

    async def _outbox_mailbox(self) -> None:
        """Everything still in the mailbox goes to the outbox (stop, or the actor's end)."""
        getter, self._getter = self._getter, None
        if getter is not None:
            if getter.done() and not getter.cancelled():
                await self._outbox_letter(getter.result())
            else:
                getter.cancel()
        while not self._mailbox.empty():
            await self._outbox_letter(self._mailbox.get_nowait())

    async def _store(self, event: Event) -> PublishOutcome:
        try:
            await self._outbox.append(event)
        except Exception:  # any outbox backend's failure: the log is the last place left
            log.exception(
                "event outbox failed; event kept only in this log line: %s",
                event.to_json().decode(),
                extra={"request_id": event.request_id},
            )
            EVENTS_PUBLISHED.labels("logged").inc()
            return "logged"
        EVENTS_PUBLISHED.labels("outboxed").inc()
        await self._update_depth()
        return "outboxed"

    async def _forget(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        try:
            await self._outbox.remove(event_ids)
        except Exception:  # any outbox backend's failure: they stay, and will be sent again
            log.exception("event outbox could not drop %d confirmed events", len(event_ids))
        await self._update_depth()

    async def _has_backlog(self) -> bool:
        try:
            depth = await self._outbox.depth()
        except Exception:  # any outbox backend's failure; treat it as empty until it answers
            log.exception("event outbox depth unknown")
            return False
        OUTBOX_DEPTH.set(depth)
        return depth > 0

    async def _update_depth(self) -> None:
        with contextlib.suppress(Exception):  # a gauge must never fail a publish
            OUTBOX_DEPTH.set(await self._outbox.depth())

    def _outbox_usable(self) -> bool:
        return asyncio.get_running_loop().time() >= self._outbox_retry_at

    def _stop_requested(self) -> bool:
        return self._stopping is None or self._stopping.done()

    def _flush_over(self) -> bool:
        return asyncio.get_running_loop().time() >= self._flush_until

    def _set_state(self, state: str) -> None:
        self._state = state
        PUBLISHER_CONNECTED.set(1 if state == "connected" else 0)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a publish task's exception as seen; the actor reads results it still cares about."""
    if not task.cancelled():
        task.exception()


@final
class LogFilePublisher:
    """The embedded default without a broker: each event becomes a JSON line in a file and a log line.

    Args:
        path: the JSON-lines file (``./var/events.jsonl`` by default from the settings).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    @property
    def state(self) -> str:
        return "embedded"

    async def ready(self) -> bool:
        return True

    async def start(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

    async def stop(self, flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S) -> None:
        """Nothing to flush: every `publish` returns only after its line is written."""

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        line = event.to_json() + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line)
        log.info("event %s %s", event.type, event.id, extra={"request_id": event.request_id})
        EVENTS_PUBLISHED.labels("logged").inc()
        return "logged"

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(line)
