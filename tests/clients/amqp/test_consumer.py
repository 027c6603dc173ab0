from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiormq
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from prometheus_client import REGISTRY

from app.clients.amqp import Consumer
from app.clients.amqp.retries import RETRIES_HEADER
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
            if consumer.topology.delivery == "shared":  # an instance's own goes with its connection
                await channel.queue_delete(consumer.queue)
            await channel.queue_delete(consumer.dead_letter_queue)
            await channel.exchange_delete(consumer.exchange)
            await channel.exchange_delete(consumer.dead_letter_exchange)


def make_consumer(
    url: str, unique: str, handler: Callable[[Event], Awaitable[None]], *, retry_delay_s: float = 0,
    **options: Any,
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
        **options,
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


@pytest.mark.parametrize(
    ("queue_type", "delivery"), [("quorum", "shared"), ("classic", "shared"), ("quorum", "each-instance")]
)
async def test_failing_handler_is_retried_then_dead_lettered(
    amqp_url: str, unique: str, queue_type: str, delivery: str
) -> None:
    attempts: list[Event] = []

    async def handler(event: Event) -> None:
        attempts.append(event)
        msg = "a bug in a step"
        raise RuntimeError(msg)

    event = Event.create("user.deleted", {"id": 6}, "req-6")
    consumer = make_consumer(amqp_url, unique, handler, queue_type=queue_type, delivery=delivery)
    async with running(consumer, amqp_url):
        await send(amqp_url, consumer.exchange, "user.deleted", event.to_json(), event)
        await eventually(lambda: _dead(amqp_url, consumer), 10, "message dead-lettered")
        await asyncio.sleep(0.3)  # no further attempt may follow
        dead = await get_one(amqp_url, consumer.dead_letter_queue)

        assert len(attempts) == MAX_RETRIES + 1
        assert all(attempt == event for attempt in attempts)
        assert consumed(consumer.name, "retried") == MAX_RETRIES
        assert consumed(consumer.name, "dead_lettered") == 1
        if delivery == "shared":  # an instance's own queue is exclusive to its connection
            assert await depth(amqp_url, consumer.queue) == 0
    assert dead is not None
    assert Event.from_json(dead.body) == event
    props = dead.header.properties
    assert props.message_id == event.id
    assert props.headers is not None
    assert props.headers["x-request-id"] == "req-6"
    deaths: Any = props.headers["x-death"]
    if queue_type == "quorum" and delivery == "shared":  # the broker counted the deliveries: no copy made
        assert [(d["queue"], d["reason"]) for d in deaths] == [(consumer.queue, "delivery_limit")]
        assert RETRIES_HEADER not in props.headers
    else:  # a classic queue (each instance's own is one) counts nothing: the copies carry the count
        assert [(d["queue"], d["reason"]) for d in deaths] == [(consumer.queue, "rejected")]
        assert props.headers[RETRIES_HEADER] == MAX_RETRIES


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
        assert _link_gauge(consumer) == 1
        await stop_service("rabbitmq")
        try:
            await eventually(lambda: _is_not(consumer, "connected"), 10, "consumer noticed the outage")
            assert _link_gauge(consumer) == 0  # a subscription cut off shows in the metrics
        finally:
            await start_service("rabbitmq")
        await eventually(lambda: _is(consumer, "connected"), 30, "consumer resubscribed")
        assert _link_gauge(consumer) == 1

        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _has(seen, 1), 5, "event handled after the restart")

    assert seen == [event]


def _link_gauge(consumer: Consumer) -> float | None:
    return REGISTRY.get_sample_value("turnstile_consumer_connected", {"subscription": consumer.name})


async def _is(consumer: Consumer, state: str) -> bool:
    return consumer.state == state


async def _is_not(consumer: Consumer, state: str) -> bool:
    return consumer.state != state


async def _has(items: Sequence[object], n: int) -> bool:
    return len(items) >= n


async def _dead(url: str, consumer: Consumer) -> bool:
    return await depth(url, consumer.dead_letter_queue) > 0


# --- delivery: shared or each instance --------------------------------------------------------
async def test_each_instance_consumers_each_hear_every_event(amqp_url: str, unique: str) -> None:
    heard: dict[str, list[Event]] = {"a": [], "b": []}

    def handler_for(name: str) -> Callable[[Event], Awaitable[None]]:
        async def handler(event: Event) -> None:
            heard[name].append(event)

        return handler

    first = make_consumer(amqp_url, unique, handler_for("a"), delivery="each-instance")
    second = make_consumer(amqp_url, unique, handler_for("b"), delivery="each-instance")
    assert first.queue != second.queue
    assert first.queue.startswith(f"test.{unique}.cache.")
    events = [Event.create("user.updated", {"id": i}, f"req-{i}") for i in range(3)]
    async with running(first, amqp_url), running(second, amqp_url):
        for event in events:
            await send(amqp_url, first.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _has(heard["a"], 3), 5, "the first instance heard every event")
        await eventually(lambda: _has(heard["b"], 3), 5, "the second instance heard every event")
    assert heard["a"] == heard["b"] == events
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await depth(amqp_url, first.queue)  # gone with its consumer


async def test_shared_consumers_compete_for_each_event(amqp_url: str, unique: str) -> None:
    heard: list[Event] = []

    async def handler(event: Event) -> None:
        heard.append(event)

    first, second = make_consumer(amqp_url, unique, handler), make_consumer(amqp_url, unique, handler)
    assert first.queue == second.queue
    events = [Event.create("user.updated", {"id": i}, f"req-{i}") for i in range(6)]
    async with running(first, amqp_url), running(second, amqp_url):
        for event in events:
            await send(amqp_url, first.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _has(heard, 6), 5, "every event handled")
        await asyncio.sleep(0.2)
    assert sorted(e.id for e in heard) == sorted(e.id for e in events)  # once each, not twice


async def test_a_queue_declared_otherwise_is_named_with_its_fix(
    amqp_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with broker_channel(amqp_url) as channel:
        await channel.queue_declare(f"test.{unique}.cache", durable=True)  # an old classic queue

    async def handler(event: Event) -> None:
        return None

    consumer = make_consumer(amqp_url, unique, handler)
    await consumer.start()
    try:
        await eventually(lambda: _logged(caplog, "delete_queue"), 5, "the mismatch logged")
        assert consumer.state != "connected"
    finally:
        await consumer.stop()
        async with broker_channel(amqp_url) as channel:
            await channel.queue_delete(consumer.queue)
            await channel.queue_delete(consumer.dead_letter_queue)
            await channel.exchange_delete(consumer.exchange)
            await channel.exchange_delete(consumer.dead_letter_exchange)


# --- a dependency that is down ----------------------------------------------------------------
class DependencyDown(Exception):
    """Stands for RedisUnavailable and the like."""


def _waits_for(exc: BaseException) -> bool:
    return isinstance(exc, DependencyDown)


async def test_a_message_waits_for_a_dependency_without_spending_its_retries(amqp_url: str, unique: str) -> None:
    attempts: list[float] = []

    async def handler(event: Event) -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= MAX_RETRIES + 3:  # down for longer than the retries would last
            msg = "Redis is down"
            raise DependencyDown(msg)

    event = Event.create("user.updated", {"id": 9}, "req-9")
    consumer = make_consumer(
        amqp_url, unique, handler, waits_for=_waits_for, max_wait_s=30, wait_base_s=0.05, wait_max_s=0.05
    )
    async with running(consumer, amqp_url):
        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _acked(consumer), 10, "handled once the dependency is back")
        assert consumed(consumer.name, "retried") == 0
        assert consumed(consumer.name, "waited") == MAX_RETRIES + 3
        assert await depth(amqp_url, consumer.dead_letter_queue) == 0


async def test_a_message_that_waited_too_long_is_dead_lettered(amqp_url: str, unique: str) -> None:
    async def handler(event: Event) -> None:
        msg = "Redis is down"
        raise DependencyDown(msg)

    event = Event.create("user.updated", {"id": 10}, "req-10")
    consumer = make_consumer(
        amqp_url, unique, handler, waits_for=_waits_for, max_wait_s=0.5, wait_base_s=0.05, wait_max_s=0.05
    )
    async with running(consumer, amqp_url):
        await send(amqp_url, consumer.exchange, "user.updated", event.to_json(), event)
        await eventually(lambda: _dead(amqp_url, consumer), 5, "dead-lettered after its wait")
        assert consumed(consumer.name, "retried") == 0


async def test_a_wait_cut_short_by_stop_leaves_the_message_for_the_next_consumer(amqp_url: str, unique: str) -> None:
    down = True
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        if down:
            msg = "Redis is down"
            raise DependencyDown(msg)
        handled.append(event)

    event = Event.create("user.updated", {"id": 11}, "req-11")
    first = make_consumer(amqp_url, unique, handler, waits_for=_waits_for, max_wait_s=60)
    await first.start()
    await eventually(lambda: _is(first, "connected"), 10, "consumer subscribed")
    await send(amqp_url, first.exchange, "user.updated", event.to_json(), event)
    await eventually(lambda: _waited(first), 5, "the message waits")
    await first.stop()
    down = False
    async with running(make_consumer(amqp_url, unique, handler, waits_for=_waits_for), amqp_url) as second:
        await eventually(lambda: _has(handled, 1), 5, "redelivered to the next consumer")
        assert await depth(amqp_url, second.dead_letter_queue) == 0
    assert handled == [event]


async def _acked(consumer: Consumer) -> bool:
    return consumed(consumer.name, "acked") >= 1


async def _waited(consumer: Consumer) -> bool:
    return consumed(consumer.name, "waited") >= 1


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)
