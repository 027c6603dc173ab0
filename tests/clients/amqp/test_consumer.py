from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import aiormq
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from prometheus_client import REGISTRY

from app.clients.amqp import Consumer
from app.models.events import Event
from tests.services import start_service, stop_service

MAX_RETRIES = 3


def consumed(queue: str, outcome: str) -> float:
    labels = {"subscription": queue, "outcome": outcome}
    return REGISTRY.get_sample_value("turnstile_events_consumed_total", labels) or 0.0


@asynccontextmanager
async def broker_channel(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aiormq.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def send(url: str, exchange: str, routing_key: str, body: bytes, event: Event | None = None) -> None:
    async with broker_channel(url) as channel:
        await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=event.amqp_properties() if event else aiormq.spec.Basic.Properties(delivery_mode=2),
        )


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.05)


async def get_one(url: str, queue: str) -> DeliveredMessage | None:
    async with broker_channel(url) as channel:
        message = await channel.basic_get(queue, no_ack=True)
    return None if isinstance(message.delivery, aiormq.spec.Basic.GetEmpty) else message


async def depth(url: str, queue: str) -> int:
    async with broker_channel(url) as channel:
        declared = await channel.queue_declare(queue, passive=True)
    return declared.message_count or 0


@asynccontextmanager
async def running(consumer: Consumer, url: str) -> AsyncIterator[Consumer]:
    await consumer.start()
    try:
        await eventually(lambda: _is(consumer, "connected"), 10, "consumer subscribed")
        yield consumer
    finally:
        await consumer.stop()
        async with broker_channel(url) as channel:
            await channel.queue_delete(consumer.queue)
            await channel.queue_delete(consumer.dead_letter_queue)
            await channel.exchange_delete(consumer.exchange)
            await channel.exchange_delete(consumer.dead_letter_exchange)


def make_consumer(
    url: str, unique: str, handler: Callable[[Event], Awaitable[None]], *, retry_delay_s: float = 0
) -> Consumer:
    return Consumer(
        url,
        exchange=f"test.{unique}",
        queue=f"test.{unique}.cache",
        bindings=["user.updated", "user.deleted"],
        handler=handler,
        max_retries=MAX_RETRIES,
        retry_delay_s=retry_delay_s,
        reconnect_base_s=0.1,
        reconnect_max_s=1.0,
        stop_grace_s=1.0,
    )


async def test_handled_event_is_acked(amqp_url: str, unique: str) -> None:
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    event = Event.create("user.updated", {"id": 5}, "req-5")
    async with running(make_consumer(amqp_url, unique, handler), amqp_url) as consumer:
        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await send(amqp_url, consumer.exchange, "user.created", Event.create("user.created", {}, "r").to_json())
        await eventually(lambda: _has(seen, 1), 5, "handler called")
        await asyncio.sleep(0.2)

        assert seen == [event]  # user.created is not bound
        assert await depth(amqp_url, consumer.queue) == 0
        assert await depth(amqp_url, consumer.dead_letter_queue) == 0
        assert consumed(consumer.queue, "acked") == 1


async def test_failing_handler_is_retried_then_dead_lettered(amqp_url: str, unique: str) -> None:
    attempts: list[Event] = []

    async def handler(event: Event) -> None:
        attempts.append(event)
        msg = "the data service is down"
        raise RuntimeError(msg)

    event = Event.create("user.deleted", {"id": 6}, "req-6")
    async with running(make_consumer(amqp_url, unique, handler), amqp_url) as consumer:
        await send(amqp_url, consumer.exchange, "user.deleted", event.to_json(), event)
        await eventually(lambda: _dead(amqp_url, consumer), 10, "message dead-lettered")
        await asyncio.sleep(0.3)  # no further attempt may follow
        dead = await get_one(amqp_url, consumer.dead_letter_queue)

        assert len(attempts) == MAX_RETRIES + 1
        assert all(attempt == event for attempt in attempts)
        assert consumed(consumer.queue, "retried") == MAX_RETRIES
        assert consumed(consumer.queue, "dead_lettered") == 1
        assert await depth(amqp_url, consumer.queue) == 0
    assert dead is not None
    assert Event.from_json(dead.body) == event
    props = dead.header.properties
    assert props.message_id == event.id
    assert props.headers is not None
    assert props.headers["x-retries"] == MAX_RETRIES
    assert props.headers["x-request-id"] == "req-6"


async def test_handler_that_recovers_gets_the_event_acked(amqp_url: str, unique: str) -> None:
    attempts: list[Event] = []

    async def handler(event: Event) -> None:
        attempts.append(event)
        if len(attempts) < 2:
            msg = "flaky"
            raise RuntimeError(msg)

    event = Event.create("user.updated", {"id": 7}, "req-7")
    async with running(make_consumer(amqp_url, unique, handler), amqp_url) as consumer:
        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _has(attempts, 2), 5, "second attempt")
        await asyncio.sleep(0.2)

        assert attempts == [event, event]
        assert consumed(consumer.queue, "retried") == 1
        assert consumed(consumer.queue, "acked") == 1
        assert await depth(amqp_url, consumer.dead_letter_queue) == 0


async def test_retries_wait_longer_each_time(amqp_url: str, unique: str) -> None:
    """Each retry waits at least half its doubling ceiling (equal jitter): a lower bound only."""
    seen_at: list[float] = []

    async def handler(event: Event) -> None:
        seen_at.append(time.monotonic())
        if len(seen_at) < 3:
            msg = "dependency restarting"
            raise RuntimeError(msg)

    event = Event.create("user.updated", {"id": 8}, "req-8")
    async with running(make_consumer(amqp_url, unique, handler, retry_delay_s=0.2), amqp_url) as consumer:
        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _has(seen_at, 3), 10, "third attempt")
    gaps = [later - earlier for earlier, later in itertools.pairwise(seen_at)]
    assert gaps[0] >= 0.1
    assert gaps[1] >= 0.2


async def test_garbage_body_is_dead_lettered_at_once(amqp_url: str, unique: str) -> None:
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    async with running(make_consumer(amqp_url, unique, handler), amqp_url) as consumer:
        await send(amqp_url, consumer.exchange, "user.updated", b"\x00 not an event")
        await eventually(lambda: _dead(amqp_url, consumer), 5, "garbage dead-lettered")
        dead = await get_one(amqp_url, consumer.dead_letter_queue)

        assert seen == []
        assert consumed(consumer.queue, "dead_lettered") == 1
        assert consumed(consumer.queue, "retried") == 0
    assert dead is not None
    assert dead.body == b"\x00 not an event"


@pytest.mark.timeout(120)
async def test_consumer_resubscribes_after_a_broker_restart(amqp_url: str, unique: str) -> None:
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    event = Event.create("user.updated", {"id": 8}, "req-8")
    async with running(make_consumer(amqp_url, unique, handler), amqp_url) as consumer:
        await stop_service("rabbitmq")
        try:
            await eventually(lambda: _is_not(consumer, "connected"), 10, "consumer noticed the outage")
        finally:
            await start_service("rabbitmq")
        await eventually(lambda: _is(consumer, "connected"), 30, "consumer resubscribed")

        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _has(seen, 1), 5, "event handled after the restart")

    assert seen == [event]


async def _is(consumer: Consumer, state: str) -> bool:
    return consumer.state == state


async def _is_not(consumer: Consumer, state: str) -> bool:
    return consumer.state != state


async def _has(items: Sequence[object], n: int) -> bool:
    return len(items) >= n


async def _dead(url: str, consumer: Consumer) -> bool:
    return await depth(url, consumer.dead_letter_queue) > 0
