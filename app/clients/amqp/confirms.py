"""Sending one event with `mandatory` and publisher confirms, and reading what the broker said."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import aiormq
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from app.clients.amqp.link import CONNECTION_ERRORS, ConnectionLost
from app.clients.amqp.metrics import EVENTS_PUBLISHED
from app.models.events import Event

log = logging.getLogger("turnstile.amqp.publisher")

Sent = Literal["confirmed", "unroutable", "nacked"]


def send(channel: AbstractChannel, exchange: str, event: Event) -> asyncio.Task[Any]:
    """Start publishing `event`; the task finishes with the broker's confirm."""
    task = asyncio.create_task(
        channel.basic_publish(
            event.to_json(),
            exchange=exchange,
            routing_key=event.type,
            properties=event.amqp_properties(),
            mandatory=True,
        )
    )
    task.add_done_callback(_retrieve)
    return task


def settle(task: asyncio.Task[Any], event: Event, exchange: str) -> Sent:
    """What a finished publish means, counted; raises `ConnectionLost` for a broken channel.

    An unroutable event (the exchange took it, no queue was bound) is logged with its id and
    counted, not retried; a nack leaves it for the outbox to retry.
    """
    try:
        frame = task.result()
    except aiormq.exceptions.PublishError as exc:
        log.warning(
            "event %s (%s) is unroutable on exchange %s: no queue is bound; not retried: %s",
            event.id, event.type, exchange, exc,
            extra={"request_id": event.request_id},
        )
        EVENTS_PUBLISHED.labels("unroutable").inc()
        return "unroutable"
    except aiormq.exceptions.DeliveryError:
        frame = Basic.Nack()
    except asyncio.CancelledError as exc:
        raise ConnectionLost from exc
    except CONNECTION_ERRORS as exc:
        raise ConnectionLost from exc
    if isinstance(frame, Basic.Nack | Basic.Reject):
        log.warning("broker refused event %s (nack); it stays in the outbox", event.id)
        EVENTS_PUBLISHED.labels("nacked").inc()
        return "nacked"
    EVENTS_PUBLISHED.labels("confirmed").inc()
    return "confirmed"


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a publish task's exception as seen; the actor reads results it still cares about."""
    if not task.cancelled():
        task.exception()
