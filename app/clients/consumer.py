"""Consuming domain events (contract §9, reactive side): one actor per subscription.

Each `Consumer` owns its own connection and channel, declares its topology at every
(re)connect, and reconnects with capped exponential backoff and jitter (aiormq has no
reconnection of its own). Topology for ``Consumer(exchange="users", queue="q", ...)``:

    users (topic, durable) --binding keys--> q (durable, dead-letters to users.dlx with key "q")
    users.dlx (direct, durable) --"q"--> q.dead (durable)

A message is acked after its handler returns. A message that is not an `Event` is
dead-lettered at once. A handler failure is retried at most `max_retries` times, so the
handler sees a message at most ``max_retries + 1`` times, and then it is dead-lettered.

How retries are counted: the consumer republishes a copy to the queue (default exchange,
routing key = queue name) with the header ``x-retries`` incremented, waits for that publish's
confirm, and only then acks the original. Nack-with-requeue cannot bound retries here:
RabbitMQ 3.10 classic queues keep no delivery counter (``x-delivery-count`` and the
``delivery-limit`` policy exist only for quorum queues); the ``redelivered`` flag is a
boolean. A counter carried in the message itself works on every queue type. The price: a
retried message goes to the back of the queue (no ordering among retries), and a crash
between the copy's confirm and the ack can leave both (at-least-once; dedupe by message_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, final

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic
from prometheus_client import Counter

from app.clients.retry import backoff_s
from app.models.events import Event, EventDecodeError

log = logging.getLogger(__name__)

RETRIES_HEADER: Final = "x-retries"

EVENTS_CONSUMED = Counter(
    "turnstile_events_consumed_total",
    "Consumed events by subscription (queue) and outcome: acked, retried, dead_lettered.",
    ["subscription", "outcome"],
)

# What a broken or closed connection raises out of aiormq (see app.clients.amqp).
_CONNECTION_ERRORS: Final = (aiormq.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError)

EventHandler = Callable[[Event], Awaitable[None]]


@final
class Consumer:
    """A subscription to `exchange` through a durable `queue`, handled by `handler`.

    Args:
        url: `amqp://` or `amqps://` URL.
        exchange: the durable topic exchange the events are published to.
        queue: this subscription's durable queue (its name labels the metrics).
        bindings: routing-key patterns, e.g. ``["user.updated", "user.deleted"]``.
        handler: awaited once per attempt; raising means "failed, retry".
        prefetch: unacked messages in flight (and so handlers running) at once.
        max_retries: retries after the first failure before the message is dead-lettered.
        retry_delay_s: the wait before the first retry; it doubles for each next one (capped at
            `retry_delay_max_s`, with jitter), so a dependency that is down for a moment (Redis
            restarting) is ridden out instead of burning every retry at once. 0: no wait.
        stop_grace_s: how long `stop()` lets running handlers finish before it closes the
            channel (unfinished messages are then redelivered).
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str,
        queue: str,
        bindings: Sequence[str],
        handler: EventHandler,
        prefetch: int = 16,
        max_retries: int = 3,
        retry_delay_s: float = 1.0,
        retry_delay_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        self._url = url
        self.exchange = exchange
        self.queue = queue
        self.bindings = tuple(bindings)
        self._handler = handler
        self._prefetch = prefetch
        self._max_retries = max_retries
        self._retry_delay_s = retry_delay_s
        self._retry_delay_max_s = retry_delay_max_s
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_base_s = reconnect_base_s
        self._reconnect_max_s = reconnect_max_s
        self._stop_grace_s = stop_grace_s
        self._state = "stopped"
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._handling: set[asyncio.Task[Any]] = set()
        self._consumer_tag: str | None = None

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def state(self) -> str:
        """``connecting``, ``connected``, ``disconnected`` or ``stopped``."""
        return self._state

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"amqp-consumer:{self.queue}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        assert self._stopping is not None
        if not self._stopping.done():
            self._stopping.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(task), self._stop_grace_s + self._connect_timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._state = "stopped"

    # --- the actor ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._stopping is not None
        attempt = 0
        while not self._stopping.done():
            self._state = "connecting"
            try:
                connection, channel = await self._open()
            except _CONNECTION_ERRORS as exc:
                self._state = "disconnected"
                level = logging.WARNING if attempt % 10 == 0 else logging.DEBUG
                log.log(level, "consumer %s cannot subscribe (try %d): %r", self.queue, attempt + 1, exc)
                delay = backoff_s(attempt, base_s=self._reconnect_base_s, max_s=self._reconnect_max_s)
                attempt += 1
                await asyncio.wait([self._stopping], timeout=delay)
                continue
            attempt = 0
            await self._session(connection, channel)
        self._state = "stopped"

    async def _open(self) -> tuple[AbstractConnection, AbstractChannel]:
        async with asyncio.timeout(self._connect_timeout_s):
            connection = await aiormq.connect(self._url)
            try:
                channel = await connection.channel(publisher_confirms=True)  # confirms the retry copies
                await self._declare(channel)
                await channel.basic_qos(prefetch_count=self._prefetch)
                consuming = await channel.basic_consume(self.queue, self._on_message, no_ack=False)
                self._consumer_tag = consuming.consumer_tag
            except BaseException:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await connection.close()
                raise
        return connection, channel

    async def _declare(self, channel: AbstractChannel) -> None:
        await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        await channel.exchange_declare(self.dead_letter_exchange, exchange_type="direct", durable=True)
        await channel.queue_declare(self.dead_letter_queue, durable=True)
        await channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key=self.queue)
        await channel.queue_declare(
            self.queue,
            durable=True,
            arguments={
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": self.queue,
            },
        )
        for key in self.bindings:
            await channel.queue_bind(self.queue, self.exchange, routing_key=key)

    async def _session(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        assert self._stopping is not None
        self._state = "connected"
        log.info("consumer %s subscribed to %s %s", self.queue, self.exchange, list(self.bindings))
        lost = [connection.closing, channel.closing]
        try:
            await asyncio.wait([*lost, self._stopping], return_when=asyncio.FIRST_COMPLETED)
            if self._stopping.done() and not any(f.done() for f in lost):
                await self._drain_handlers(channel)
            else:
                log.warning("consumer %s lost its channel; resubscribing", self.queue)
        finally:
            self._state = "disconnected"
            for future in lost:
                future.cancel()
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await connection.close()

    async def _drain_handlers(self, channel: AbstractChannel) -> None:
        """Stop taking messages, then give running handlers `stop_grace_s` to finish."""
        if self._consumer_tag is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await channel.basic_cancel(self._consumer_tag)
        if self._handling:
            await asyncio.wait(self._handling, timeout=self._stop_grace_s)

    # --- one message -------------------------------------------------------------------------

    async def _on_message(self, message: DeliveredMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handling.add(task)
        try:
            await self._handle(message)
        except _CONNECTION_ERRORS as exc:
            # The ack or the retry copy could not be sent: the broker redelivers the message.
            log.warning("consumer %s could not settle a message: %r", self.queue, exc)
        finally:
            self._handling.discard(task)

    async def _handle(self, message: DeliveredMessage) -> None:
        tag = message.delivery_tag
        assert tag is not None
        try:
            event = Event.from_message(message.body, message.header.properties.headers)
        except EventDecodeError as exc:
            log.error(
                "consumer %s: dead-lettering a message that is not an event (message_id %s): %s",
                self.queue,
                message.header.properties.message_id,
                exc,
            )
            await message.channel.basic_reject(tag, requeue=False)
            EVENTS_CONSUMED.labels(self.queue, "dead_lettered").inc()
            return
        retries = _retries(message)
        try:
            await self._handler(event)
        except Exception:  # a handler's failure of any kind is what retries are for
            log.exception(
                "consumer %s: handler failed for event %s (%s), attempt %d of %d",
                self.queue,
                event.id,
                event.type,
                retries + 1,
                self._max_retries + 1,
                extra={"request_id": event.request_id},
            )
            await self._retry_or_dead_letter(message, tag, retries)
            return
        await message.channel.basic_ack(tag)
        EVENTS_CONSUMED.labels(self.queue, "acked").inc()

    async def _retry_or_dead_letter(self, message: DeliveredMessage, tag: int, retries: int) -> None:
        if retries >= self._max_retries:
            await message.channel.basic_reject(tag, requeue=False)
            EVENTS_CONSUMED.labels(self.queue, "dead_lettered").inc()
            return
        if self._retry_delay_s > 0:
            # Equal jitter: at least half the exponential wait, so the retries really span it.
            ceiling = min(self._retry_delay_max_s, self._retry_delay_s * 2.0 ** min(retries, 32))
            await asyncio.sleep(ceiling / 2 + backoff_s(0, base_s=ceiling / 2, max_s=ceiling / 2))
        await message.channel.basic_publish(
            message.body,
            exchange="",
            routing_key=self.queue,
            properties=_with_retries(message.header.properties, retries + 1),
        )
        await message.channel.basic_ack(tag)
        EVENTS_CONSUMED.labels(self.queue, "retried").inc()


def _retries(message: DeliveredMessage) -> int:
    headers = message.header.properties.headers or {}
    value = headers.get(RETRIES_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _with_retries(properties: Basic.Properties, retries: int) -> Basic.Properties:
    """The same properties (message_id, timestamp, x-request-id …) with the retry count set."""
    headers = dict(properties.headers or {})
    headers[RETRIES_HEADER] = retries
    return Basic.Properties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=headers,
        delivery_mode=properties.delivery_mode,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        expiration=properties.expiration,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        message_type=properties.message_type,
        user_id=properties.user_id,
        app_id=properties.app_id,
    )
