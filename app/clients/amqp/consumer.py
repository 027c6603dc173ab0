"""`Consumer`: one subscription's actor (contract §9, reactive side).

Each consumer holds its own `BrokerLink` (app/clients/amqp/link.py), which declares the
subscription's queue (app/clients/amqp/topology.py: shared or each-instance, quorum or
classic) at every (re)connect and reconnects with backoff. A message is acked after its
handler returns. A message that is not an `Event` is dead-lettered at once. A handler that
fails because a dependency is down makes the message wait for it (app/clients/amqp/waits.py);
any other failure is retried a bounded number of times (app/clients/amqp/retries.py), then the
message is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, final

from aiormq.abc import AbstractChannel, DeliveredMessage

from app.clients.amqp.link import CONNECTION_ERRORS, BrokerLink, LinkState, Opened
from app.clients.amqp.metrics import CONSUMER_CONNECTED, EVENTS_CONSUMED
from app.clients.amqp.retries import DeliveryLimitRetries, RepublishRetries, Retries
from app.clients.amqp.topology import Delivery, QueueTopology, QueueType
from app.clients.amqp.waits import (
    DEFAULT_MAX_WAIT_S,
    WAIT_BASE_S,
    WAIT_MAX_S,
    DependencyWaits,
    WaitedTooLong,
    WaitInterrupted,
)
from app.models.events import Event, EventDecodeError

log = logging.getLogger("turnstile.amqp.consumer")

EventHandler = Callable[[Event], Awaitable[None]]


@final
class Consumer:
    """A subscription to `exchange` through `queue`, handled by `handler`.

    Args:
        url: `amqp://` or `amqps://` URL.
        exchange: the durable topic exchange the events are published to.
        queue: this subscription's queue (its name labels the metrics); for `each-instance`
            delivery, the prefix of this process's queue.
        bindings: routing-key patterns, e.g. ``["user.updated", "user.deleted"]``.
        handler: awaited once per attempt; raising means "failed, retry".
        delivery: ``shared`` (one durable queue, competing consumers) or ``each-instance``.
        queue_type: ``quorum`` or ``classic``, for a shared queue.
        prefetch: unacked messages in flight (and so handlers running) at once.
        max_retries: retries after the first failure before the message is dead-lettered.
        retry_delay_s, retry_delay_max_s: the wait before each retry (app/clients/amqp/retries.py).
        waits_for: whether a handler's failure means "a dependency is down": the message then
            waits for it, up to `max_wait_s`, without spending its retries. None: never.
        wait_base_s, wait_max_s: the backoff between two tries of a waiting message.
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
        delivery: Delivery = "shared",
        queue_type: QueueType = "quorum",
        prefetch: int = 16,
        max_retries: int = 3,
        retry_delay_s: float = 1.0,
        retry_delay_max_s: float = 30.0,
        waits_for: Callable[[BaseException], bool] | None = None,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        wait_base_s: float = WAIT_BASE_S,
        wait_max_s: float = WAIT_MAX_S,
        connect_timeout_s: float = 5.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.topology = QueueTopology(
            exchange, queue, tuple(bindings), delivery=delivery, queue_type=queue_type, delivery_limit=max_retries
        )
        self._handler = handler
        self._prefetch = prefetch
        self._retries: Retries = (
            DeliveryLimitRetries(queue, max_retries, retry_delay_s, retry_delay_max_s)
            if self.topology.counts_deliveries
            else RepublishRetries(queue, self.topology.queue, max_retries, retry_delay_s, retry_delay_max_s)
        )
        self._waits = DependencyWaits(
            queue, waits_for or _never, max_wait_s=max_wait_s, base_s=wait_base_s, max_s=wait_max_s
        )
        self._link = BrokerLink(
            url,
            name=f"consumer {self.topology.queue}",
            prepare=self._subscribe,
            confirms=True,  # confirms the retry copies
            connect_timeout_s=connect_timeout_s,
            reconnect_base_s=reconnect_base_s,
            reconnect_max_s=reconnect_max_s,
            on_state=self._on_link_state,
        )
        self._stop_grace_s = stop_grace_s
        self._state = "stopped"
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._handling: set[asyncio.Task[Any]] = set()
        self._consumer_tag: str | None = None

    @property
    def exchange(self) -> str:
        return self.topology.exchange

    @property
    def name(self) -> str:
        """The subscription's queue as configured (the metrics' label)."""
        return self.topology.name

    @property
    def queue(self) -> str:
        """The queue consumed (for each-instance delivery, this process's own)."""
        return self.topology.queue

    @property
    def bindings(self) -> tuple[str, ...]:
        return self.topology.bindings

    @property
    def dead_letter_exchange(self) -> str:
        return self.topology.dead_letter_exchange

    @property
    def dead_letter_queue(self) -> str:
        return self.topology.dead_letter_queue

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
            await asyncio.wait_for(asyncio.shield(task), self._stop_grace_s + self._link.connect_timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._state = "stopped"

    # --- the actor ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._stopping is not None
        await self._link.run(self._session, self._stopping)
        self._state = "stopped"

    async def _subscribe(self, channel: AbstractChannel) -> None:
        await self.topology.declare(channel)
        await channel.basic_qos(prefetch_count=self._prefetch)
        consuming = await channel.basic_consume(self.queue, self._on_message, no_ack=False)
        self._consumer_tag = consuming.consumer_tag

    async def _session(self, opened: Opened) -> None:
        """Consume until stop (then let running handlers finish) or until the connection is lost."""
        assert self._stopping is not None
        await asyncio.wait([*opened.lost, self._stopping], return_when=asyncio.FIRST_COMPLETED)
        if not opened.is_lost():
            await self._drain_handlers(opened.channel)

    async def _drain_handlers(self, channel: AbstractChannel) -> None:
        """Stop taking messages, then give running handlers `stop_grace_s` to finish."""
        if self._consumer_tag is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await channel.basic_cancel(self._consumer_tag)
        if self._handling:
            await asyncio.wait(self._handling, timeout=self._stop_grace_s)

    def _on_link_state(self, state: LinkState) -> None:
        self._state = state
        CONSUMER_CONNECTED.labels(self.name).set(1 if state == "connected" else 0)

    # --- one message -------------------------------------------------------------------------

    async def _on_message(self, message: DeliveredMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handling.add(task)
        try:
            await self._handle(message)
        except WaitInterrupted:
            pass  # stopping: left unsettled, the broker redelivers it once the channel closes
        except CONNECTION_ERRORS as exc:
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
                self.name,
                message.header.properties.message_id,
                exc,
            )
            await message.channel.basic_reject(tag, requeue=False)
            EVENTS_CONSUMED.labels(self.name, "dead_lettered").inc()
            return
        assert self._stopping is not None
        try:
            await self._waits.run(lambda: self._handler(event), self._stopping)
        except WaitedTooLong as exc:
            log.error("consumer %s: dead-lettering event %s (%s): %s", self.name, event.id, event.type, exc,
                      extra={"request_id": event.request_id})
            await message.channel.basic_reject(tag, requeue=False)
            EVENTS_CONSUMED.labels(self.name, "dead_lettered").inc()
            return
        except WaitInterrupted:
            raise
        except Exception:  # a handler's failure of any kind is what retries are for
            log.exception(
                "consumer %s: handler failed for event %s (%s), attempt %d of %d",
                self.name,
                event.id,
                event.type,
                self._retries.attempt(message) + 1,
                self._retries.max_retries + 1,
                extra={"request_id": event.request_id},
            )
            await self._retries.failed(message)
            return
        await message.channel.basic_ack(tag)
        EVENTS_CONSUMED.labels(self.name, "acked").inc()


def _never(_exc: BaseException) -> bool:
    return False
