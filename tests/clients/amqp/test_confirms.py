"""What each broker answer to a publish means, and how it is counted."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pytest
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from prometheus_client import REGISTRY

from app.clients.amqp.confirms import settle
from app.clients.amqp.link import ConnectionLost
from app.models.events import Event

EVENT = Event.create("user.updated", {"id": 1}, "req-1")
# What aiormq hands back with an unroutable `mandatory` publish.
RETURNED = DeliveredMessage(
    delivery=Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="users", routing_key="user.updated"),
    header=ContentHeader(),
    body=b"{}",
    channel=None,  # type: ignore[arg-type]  # never used
)


def published(outcome: str) -> float:
    return REGISTRY.get_sample_value("turnstile_events_published_total", {"outcome": outcome}) or 0.0


async def finished(result: Any = None, exc: BaseException | None = None) -> asyncio.Task[Any]:
    async def publish() -> Any:
        if exc is not None:
            raise exc
        return result

    task = asyncio.create_task(publish())
    await asyncio.wait([task])
    return task


@pytest.mark.parametrize(
    ("result", "exc", "outcome"),
    [
        (Basic.Ack(), None, "confirmed"),
        (Basic.Nack(), None, "nacked"),
        (None, aiormq.exceptions.DeliveryError(None, Basic.Nack()), "nacked"),
        (None, aiormq.exceptions.PublishError(RETURNED, Basic.Return()), "unroutable"),
    ],
)
async def test_each_answer_is_settled_and_counted(result: Any, exc: BaseException | None, outcome: str) -> None:
    before = published(outcome)
    assert settle(await finished(result, exc), EVENT, "users") == outcome
    assert published(outcome) == before + 1


@pytest.mark.parametrize("exc", [ConnectionError("reset"), aiormq.exceptions.ChannelInvalidStateError("closed")])
async def test_a_broken_channel_is_a_lost_connection(exc: BaseException) -> None:
    with pytest.raises(ConnectionLost):
        settle(await finished(exc=exc), EVENT, "users")
