"""How a consumer retries a message whose handler failed, a bounded number of times, waiting
longer before each retry (capped, with equal jitter), then dead-letters it.

`DeliveryLimitRetries` is for a quorum queue, which counts deliveries itself: the consumer
nacks the message back (``requeue``), the broker redelivers it with ``x-delivery-count`` and,
past the queue's ``x-delivery-limit``, dead-letters it (``x-death`` reason ``delivery_limit``).

`RepublishRetries` is for a classic queue, and counts in the message itself: it republishes a copy to the queue (default
exchange, routing key = queue name) with the header ``x-retries`` incremented, waits for that
publish's confirm, and only then acks the original. Nack-with-requeue cannot bound retries on
a classic queue: RabbitMQ 3.10 classic queues keep no delivery counter (``x-delivery-count``
and the delivery limit exist only for quorum queues) and the ``redelivered`` flag is a
boolean. The price: a retried message goes to the back of the queue (no ordering among
retries), and a crash between the copy's confirm and the ack can leave both (at-least-once;
consumers dedupe by message_id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final, Protocol, final

import attrs
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from app.clients.amqp.metrics import EVENTS_CONSUMED
from app.clients.retry import backoff_s

RETRIES_HEADER: Final = "x-retries"
DELIVERY_COUNT_HEADER: Final = "x-delivery-count"


class Retries(Protocol):
    """A consumer's way to retry."""

    @property
    def max_retries(self) -> int:
        """Retries after the first failure before the message is dead-lettered."""

    def attempt(self, message: DeliveredMessage) -> int:
        """How many times this message was tried before (0 on its first delivery)."""

    async def failed(self, message: DeliveredMessage) -> None:
        """The handler failed: retry the message, or dead-letter it when its retries are spent."""


def retry_delay_s(retries: int, base_s: float, max_s: float) -> float:
    """Equal jitter: at least half the exponential wait, so the retries really span it."""
    if base_s <= 0:
        return 0.0
    ceiling = min(max_s, base_s * 2.0 ** min(retries, 32))
    return ceiling / 2 + backoff_s(0, base_s=ceiling / 2, max_s=ceiling / 2)


@final
@attrs.frozen
class DeliveryLimitRetries:
    """Retry by handing the message back to a quorum queue whose ``x-delivery-limit`` is
    `max_retries`; the broker dead-letters it after that many retries."""

    label: str  # the subscription, in the metrics
    max_retries: int
    retry_delay_s: float
    retry_delay_max_s: float

    def attempt(self, message: DeliveredMessage) -> int:
        return _count(message, DELIVERY_COUNT_HEADER)

    async def failed(self, message: DeliveredMessage) -> None:
        tag = message.delivery_tag
        assert tag is not None
        retries = self.attempt(message)
        if retries >= self.max_retries:
            await message.channel.basic_nack(tag, requeue=True)  # past the limit: the broker dead-letters it
            EVENTS_CONSUMED.labels(self.label, "dead_lettered").inc()
            return
        await asyncio.sleep(retry_delay_s(retries, self.retry_delay_s, self.retry_delay_max_s))
        await message.channel.basic_nack(tag, requeue=True)
        EVENTS_CONSUMED.labels(self.label, "retried").inc()


@final
@attrs.frozen
class RepublishRetries:
    """Retry up to `max_retries` times by republishing a copy that counts them (classic queues).

    retry_delay_s: the wait before the first retry; it doubles for each next one (capped at
    `retry_delay_max_s`, with equal jitter). 0: no wait.
    """

    label: str  # the subscription, in the metrics
    queue: str  # where the copies go: the queue consumed
    max_retries: int
    retry_delay_s: float
    retry_delay_max_s: float

    def attempt(self, message: DeliveredMessage) -> int:
        return _count(message, RETRIES_HEADER)

    async def failed(self, message: DeliveredMessage) -> None:
        tag = message.delivery_tag
        assert tag is not None
        retries = self.attempt(message)
        if retries >= self.max_retries:
            await message.channel.basic_reject(tag, requeue=False)
            EVENTS_CONSUMED.labels(self.label, "dead_lettered").inc()
            return
        await asyncio.sleep(retry_delay_s(retries, self.retry_delay_s, self.retry_delay_max_s))
        await message.channel.basic_publish(
            message.body,
            exchange="",
            routing_key=self.queue,
            properties=with_headers(message.header.properties, {RETRIES_HEADER: retries + 1}),
        )
        await message.channel.basic_ack(tag)
        EVENTS_CONSUMED.labels(self.label, "retried").inc()


def with_headers(properties: Basic.Properties, headers: Mapping[str, int | str]) -> Basic.Properties:
    """The same properties (message_id, timestamp, x-request-id …) with `headers` set."""
    merged = dict(properties.headers or {})
    merged.update(headers)
    return Basic.Properties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=merged,
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


def _count(message: DeliveredMessage, header: str) -> int:
    """The whole number a retry-counting header holds (0 when absent or malformed)."""
    value = (message.header.properties.headers or {}).get(header, 0)
    return value if isinstance(value, int) and value >= 0 else 0
