"""What a subscription declares on the broker, at every (re)connect (contract §9).

A subscription's `delivery` decides its queue:

- ``shared``: one durable queue, named by the subscription, that every instance consumes
  (competing consumers: each event is handled once for the whole deployment, and waits in the
  queue while every instance is down). A quorum queue by default: replicated on a RabbitMQ
  cluster, and counting deliveries itself (``x-delivery-limit``), so a failing message is
  dead-lettered after a bounded number of attempts. ``queue_type = "classic"`` keeps a classic
  queue for brokers without quorum queues (retries are then counted in the message, see
  app/clients/amqp/retries.py).
- ``each-instance``: a queue of this process alone (exclusive, deleted when its connection
  ends), named ``{queue}.{host}.{pid}.{random}``: every instance hears every event, for state
  each process keeps. Events published while the process is not running are not its to hear.

For ``exchange="users", queue="q"``, dead letters go the same way for both:

    users (topic, durable) --binding keys--> q (dead-letters to users.dlx with key "q")
    users.dlx (direct, durable) --"q"--> q.dead (durable, classic)
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any, Final, Literal, final

import aiormq
import attrs
from aiormq.abc import AbstractChannel

log = logging.getLogger("turnstile.amqp.consumer")

Delivery = Literal["shared", "each-instance"]
QueueType = Literal["quorum", "classic"]
DELIVERIES: tuple[Delivery, ...] = ("shared", "each-instance")
QUEUE_TYPES: tuple[QueueType, ...] = ("quorum", "classic")
DEAD_LETTER_SUFFIX: Final = ".dead"  # a subscription's dead letters' queue: its name and this


class TopologyMismatch(Exception):
    """The broker holds a queue of that name declared otherwise; an operator must resolve it."""


def instance_queue_name(prefix: str) -> str:
    """A queue name of this process's own, readable in the broker's management views."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{prefix}.{host}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


@final
@attrs.frozen
class QueueTopology:
    """A subscription's queue, its bindings on `exchange`, and where its dead letters go.

    name: the subscription's queue as configured (the shared queue's name, the prefix of an
        each-instance queue's, and the dead-letter routing key either way).
    queue: the queue declared and consumed.
    delivery_limit: for a quorum queue, the deliveries after the first before the broker
        dead-letters a message (the consumer's retries).
    """

    exchange: str
    name: str
    bindings: tuple[str, ...]
    delivery: Delivery = "shared"
    queue_type: QueueType = "quorum"
    delivery_limit: int = 3
    queue: str = attrs.field()

    @queue.default
    def _queue(self) -> str:
        return self.name if self.delivery == "shared" else instance_queue_name(self.name)

    @property
    def counts_deliveries(self) -> bool:
        """Whether the broker counts deliveries and dead-letters past the limit (a quorum queue)."""
        return self.delivery == "shared" and self.queue_type == "quorum"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}{DEAD_LETTER_SUFFIX}"

    def arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.name,
        }
        if self.counts_deliveries:
            arguments |= {"x-queue-type": "quorum", "x-delivery-limit": self.delivery_limit}
        return arguments

    async def declare(self, channel: AbstractChannel) -> None:
        await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        await channel.exchange_declare(self.dead_letter_exchange, exchange_type="direct", durable=True)
        await channel.queue_declare(self.dead_letter_queue, durable=True)
        await channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key=self.name)
        if self.delivery == "shared":
            # Durable; a quorum queue must be neither exclusive nor auto-delete.
            try:
                await channel.queue_declare(self.queue, durable=True, arguments=self.arguments())
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                msg = (
                    f"queue {self.queue} exists with other arguments than this subscription needs: a "
                    f"{self.queue_type} queue dead-lettering to {self.dead_letter_exchange}. Another release "
                    "on this vhost with the same queue names (they come from the pipelines file, not from "
                    "EVENTS_EXCHANGE)? Give this one its own vhost or queue names. A classic queue from an "
                    f"older version? Set RABBITMQ_QUEUE_TYPE to its type, or once no release uses it, delete "
                    f"it (rabbitmqctl delete_queue {self.queue}: its messages go too). The broker said: {exc}"
                )
                raise TopologyMismatch(msg) from exc
        else:
            await channel.queue_declare(
                self.queue, durable=False, exclusive=True, auto_delete=True, arguments=self.arguments()
            )
        for key in self.bindings:
            await channel.queue_bind(self.queue, self.exchange, routing_key=key)
