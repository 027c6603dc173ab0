from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiormq
import attrs
import orjson
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from prometheus_client import REGISTRY

from app.clients.amqp import AmqpPublisher
from app.clients.outbox import FileOutbox, Outbox, RedisOutbox, SpilloverOutbox
from app.clients.redis import RedisConnection
from app.models.events import Event
from tests.clients.amqp.broker import FreezableProxy
from tests.services import start_service, stop_service

DEADLINE_S = 0.5
SLACK_S = 0.5  # the caller waits deadline + reply_slack (0.25 s); the rest is scheduling noise
UNREACHABLE_URL = "amqp://guest:guest@127.0.0.1:1/"


def published(outcome: str) -> float:
    return REGISTRY.get_sample_value("turnstile_events_published_total", {"outcome": outcome}) or 0.0


def make_publisher(url: str, exchange: str, outbox: Outbox) -> AmqpPublisher:
    return AmqpPublisher(url, exchange, outbox, reconnect_base_s=0.1, reconnect_max_s=1.0, connect_timeout_s=2.0)


@asynccontextmanager
async def broker_channel(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aiormq.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


@asynccontextmanager
async def capture(url: str, exchange: str) -> AsyncIterator[asyncio.Queue[DeliveredMessage]]:
    """An exclusive auto-delete queue bound to `exchange`, as the style guide's event tests do."""
    received: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
    async with broker_channel(url) as channel:
        await channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None
        await channel.queue_bind(declared.queue, exchange, routing_key="#")
        await channel.basic_consume(declared.queue, received.put, no_ack=True)
        try:
            yield received
        finally:
            await channel.exchange_delete(exchange)


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.1)


async def test_published_event_arrives_with_the_contract_properties(amqp_url: str, unique: str, tmp_path: Path) -> None:
    exchange = f"test.{unique}"
    publisher = make_publisher(amqp_url, exchange, FileOutbox(tmp_path))
    async with capture(amqp_url, exchange) as received:
        await publisher.start()
        try:
            await eventually(publisher.ready, 5, "publisher connected")
            assert publisher.state == "connected"
            event = Event.create("user.created", {"id": 1, "email": "a@example.com"}, "req-42")

            outcome = await publisher.publish(event, confirm_deadline_s=2.0)
            message = await asyncio.wait_for(received.get(), 5)
        finally:
            await publisher.stop(1.0)

    assert outcome == "confirmed"
    assert orjson.loads(message.body) == orjson.loads(event.to_json())
    assert message.routing_key == "user.created"
    props = message.header.properties
    assert props.message_id == event.id
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.app_id == "turnstile"
    assert props.headers == {"x-request-id": "req-42"}
    assert props.timestamp is not None
    assert int(props.timestamp.timestamp()) == int(event.timestamp.timestamp())
    assert publisher.state == "disconnected"


async def test_unroutable_event_is_counted_and_not_raised(amqp_url: str, unique: str, tmp_path: Path) -> None:
    exchange = f"test.{unique}"
    outbox = FileOutbox(tmp_path)
    publisher = make_publisher(amqp_url, exchange, outbox)
    await publisher.start()
    before = published("unroutable")
    try:
        await eventually(publisher.ready, 5, "publisher connected")

        outcome = await publisher.publish(Event.create("user.deleted", {"id": 9}, "r"), confirm_deadline_s=2.0)
    finally:
        await publisher.stop(1.0)
        async with broker_channel(amqp_url) as channel:
            await channel.exchange_delete(exchange)

    assert outcome == "confirmed"
    assert published("unroutable") == before + 1
    assert await outbox.depth() == 0


@pytest.mark.timeout(120)
async def test_outage_outboxes_quickly_then_delivers_in_order(amqp_url: str, unique: str, tmp_path: Path) -> None:
    exchange, queue = f"test.{unique}", f"test.{unique}.capture"
    async with broker_channel(amqp_url) as channel:
        # Durable, so it is still bound when the broker comes back and the outbox drains.
        await channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        await channel.queue_declare(queue, durable=True)
        await channel.queue_bind(queue, exchange, routing_key="#")
    outbox = FileOutbox(tmp_path)
    publisher = make_publisher(amqp_url, exchange, outbox)
    await publisher.start()
    events = [Event.create("user.updated", {"id": i}, f"req-{i}") for i in range(3)]
    try:
        await eventually(publisher.ready, 5, "publisher connected")
        await stop_service("rabbitmq")
        try:
            for event in events:
                started = time.monotonic()
                assert await publisher.publish(event, confirm_deadline_s=DEADLINE_S) == "outboxed"
                assert time.monotonic() - started < DEADLINE_S + SLACK_S
            assert await outbox.depth() == 3
            assert not await publisher.ready()
        finally:
            await start_service("rabbitmq")

        await eventually(lambda: _empty(outbox), 30, "outbox drained after the broker returned")
        async with broker_channel(amqp_url) as channel:
            bodies = [await _get(channel, queue) for _ in events]
            assert None not in bodies
            assert await _get(channel, queue) is None
    finally:
        await publisher.stop(1.0)
        async with broker_channel(amqp_url) as channel:
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)

    assert [Event.from_json(body or b"") for body in bodies] == events


@pytest.fixture(params=["file", "redis"])
async def make_outbox(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> AsyncIterator[Callable[[], Outbox]]:
    """Opens the same durable outbox again each call, as a restarted process would."""
    if request.param == "file":
        yield lambda: FileOutbox(tmp_path)
        return
    connection = RedisConnection(request.getfixturevalue("redis_url"))
    await connection.start()
    key = f"test:outbox:{unique}"
    try:
        yield lambda: RedisOutbox(connection, key=key)
    finally:
        await connection.client.delete([key])
        await connection.stop()


async def test_events_left_at_stop_stay_in_the_outbox_for_the_next_publisher(
    amqp_url: str, unique: str, make_outbox: Callable[[], Outbox]
) -> None:
    exchange = f"test.{unique}"
    # Each with the trace context of the request that made it, which must travel with it late.
    events = [
        attrs.evolve(Event.create("user.created", {"id": i}, f"req-{i}"), headers={"traceparent": traceparent(i)})
        for i in range(3)
    ]
    cut_off = make_publisher(UNREACHABLE_URL, exchange, make_outbox())
    await cut_off.start()
    for event in events:
        assert await cut_off.publish(event, confirm_deadline_s=DEADLINE_S) == "outboxed"
    await cut_off.stop(0.5)

    reopened = make_outbox()
    assert await reopened.peek(10) == events

    async with capture(amqp_url, exchange) as received:
        successor = make_publisher(amqp_url, exchange, reopened)
        await successor.start()
        try:
            messages = [await asyncio.wait_for(received.get(), 10) for _ in events]
            await eventually(lambda: _empty(reopened), 5, "outbox emptied")
        finally:
            await successor.stop(1.0)

    assert [Event.from_json(message.body) for message in messages] == events
    assert [message.header.properties.headers for message in messages] == [
        {"x-request-id": f"req-{i}", "traceparent": traceparent(i)} for i in range(3)
    ]


def traceparent(i: int) -> str:
    return f"00-0af7651916cd43dd8448eb211c80319{i}-b7ad6b7169203331-01"


async def test_new_events_queue_behind_the_outbox(amqp_url: str, unique: str, tmp_path: Path) -> None:
    exchange = f"test.{unique}"
    outbox = FileOutbox(tmp_path)
    older = [Event.create("user.created", {"id": i}, "old") for i in range(20)]
    for event in older:
        await outbox.append(event)
    newer = [Event.create("user.updated", {"id": i}, "new") for i in range(5)]

    async with capture(amqp_url, exchange) as received:
        publisher = make_publisher(amqp_url, exchange, outbox)
        await publisher.start()
        try:
            await asyncio.gather(*(publisher.publish(e, confirm_deadline_s=2.0) for e in newer))
            got = [Event.from_json((await asyncio.wait_for(received.get(), 10)).body) for _ in range(25)]
        finally:
            await publisher.stop(2.0)

    assert got[:20] == older
    assert sorted(e.id for e in got[20:]) == sorted(e.id for e in newer)


async def test_stop_flushes_what_it_can_and_loses_nothing(amqp_url: str, unique: str, tmp_path: Path) -> None:
    exchange = f"test.{unique}"
    outbox = FileOutbox(tmp_path)
    events = [Event.create("user.updated", {"id": i}, "r") for i in range(200)]
    async with capture(amqp_url, exchange) as received:
        publisher = make_publisher(amqp_url, exchange, outbox)
        await publisher.start()
        await eventually(publisher.ready, 5, "publisher connected")
        calls = [asyncio.create_task(publisher.publish(e, confirm_deadline_s=2.0)) for e in events]
        await asyncio.sleep(0)
        await publisher.stop(5.0)
        outcomes = await asyncio.gather(*calls)
        await asyncio.sleep(0.5)
        delivered = {Event.from_json(received.get_nowait().body).id for _ in range(received.qsize())}

    kept = {e.id for e in await outbox.peek(1000)}
    assert set(outcomes) <= {"confirmed", "outboxed"}
    assert delivered | kept == {e.id for e in events}


async def test_a_late_confirm_empties_the_outbox_without_a_duplicate(
    amqp_url: str, unique: str, tmp_path: Path
) -> None:
    exchange = f"test.{unique}"
    outbox = FileOutbox(tmp_path)
    events = [Event.create("user.updated", {"id": i}, f"req-{i}") for i in range(2)]
    async with FreezableProxy(amqp_url) as proxy, capture(amqp_url, exchange) as received:
        publisher = make_publisher(proxy.url, exchange, outbox)
        await publisher.start()
        try:
            await eventually(publisher.ready, 5, "publisher connected")
            proxy.freeze()
            for event in events:
                started = time.monotonic()
                assert await publisher.publish(event, confirm_deadline_s=DEADLINE_S) == "outboxed"
                assert time.monotonic() - started < DEADLINE_S + SLACK_S
            assert await outbox.depth() == 2
            proxy.thaw()

            await eventually(lambda: _empty(outbox), 5, "outbox drained")
            await asyncio.sleep(0.3)
            got = [Event.from_json(received.get_nowait().body) for _ in range(received.qsize())]
        finally:
            await publisher.stop(1.0)

    # Each was sent once: the late confirm of the held publish removed its outbox entry, no re-send.
    assert got == events


async def test_an_event_published_while_redis_and_the_broker_are_both_down_is_kept_and_delivered(
    amqp_url: str, redis_connection: RedisConnection, unique: str, tmp_path: Path
) -> None:
    exchange, queue = f"test.{unique}", f"test.{unique}.capture"
    event = Event.create("user.updated", {"id": 1}, "req-both-down")
    dead_redis = RedisConnection("redis://127.0.0.1:1/0")
    await dead_redis.start()
    cut_off = SpilloverOutbox(RedisOutbox(dead_redis, key=f"test:outbox:{unique}"), tmp_path)
    publisher = make_publisher(UNREACHABLE_URL, exchange, cut_off)
    await publisher.start()
    logged = published("logged")
    try:
        # Before, the outbox's failure left the event in an error log line only.
        assert await publisher.publish(event, confirm_deadline_s=DEADLINE_S) == "outboxed"
        assert published("logged") == logged
    finally:
        await publisher.stop(0.5)
        cut_off.close()
        await dead_redis.stop()

    async with broker_channel(amqp_url) as channel:
        await channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        await channel.queue_declare(queue, durable=True)
        await channel.queue_bind(queue, exchange, routing_key="#")
    back = SpilloverOutbox(RedisOutbox(redis_connection, key=f"test:outbox:{unique}"), tmp_path)
    publisher = make_publisher(amqp_url, exchange, back)  # the next start, both back
    await publisher.start()
    try:
        await eventually(lambda: _empty(back), 30, "the spilled event was delivered")
        async with broker_channel(amqp_url) as channel:
            body = await _get(channel, queue)
    finally:
        await publisher.stop(1.0)
        back.close()
        async with broker_channel(amqp_url) as channel:
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)
    assert Event.from_json(body or b"") == event


async def _empty(outbox: Outbox) -> bool:
    return await outbox.depth() == 0


async def _get(channel: AbstractChannel, queue: str) -> bytes | None:
    message = await channel.basic_get(queue, no_ack=True)
    if isinstance(message.delivery, aiormq.spec.Basic.GetEmpty):
        return None
    return message.body


async def test_an_event_another_process_outboxed_is_not_overtaken_by_a_later_one_of_this_process(
    amqp_url: str, unique: str, redis_connection: RedisConnection,
) -> None:
    # Two processes on one Redis: C has lost the broker, B has not. A user C created (its event
    # outboxed) and B then changed must reach consumers in that order (contract §9, §9a).
    exchange = f"test.{unique}"
    shared_key = f"test:{unique}:outbox"
    disconnected = make_publisher(UNREACHABLE_URL, exchange, RedisOutbox(redis_connection, shared_key))
    # B only looks for others' entries when idle after a minute: what keeps the order is the
    # look before each publish.
    connected = AmqpPublisher(amqp_url, exchange, RedisOutbox(redis_connection, shared_key), idle_check_s=60,
                              reconnect_base_s=0.1, reconnect_max_s=1.0, connect_timeout_s=2.0)
    created = Event.create("user.created", {"id": 7}, "create-on-c")
    changed = Event.create("user.updated", {"id": 7}, "patch-on-b")
    async with capture(amqp_url, exchange) as received:
        await connected.start()
        await disconnected.start()
        try:
            await eventually(connected.ready, 10, "B connected")
            assert await connected.publish(Event.create("user.created", {"id": 1}, "warm-up")) == "confirmed"
            assert Event.from_json((await asyncio.wait_for(received.get(), 10)).body).request_id == "warm-up"

            assert await disconnected.publish(created, confirm_deadline_s=0.3) == "outboxed"
            assert await connected.publish(changed, confirm_deadline_s=2.0) in {"confirmed", "outboxed"}
            got = [Event.from_json((await asyncio.wait_for(received.get(), 10)).body) for _ in range(2)]
        finally:
            await disconnected.stop(0.1)
            await connected.stop(2.0)
            await redis_connection.client.delete([shared_key])
    assert [event.id for event in got] == [created.id, changed.id]


async def test_without_a_broker_the_depth_gauge_follows_the_shared_outbox(
    unique: str, redis_connection: RedisConnection,
) -> None:
    # Another process drains the shared outbox: this one's gauge must not keep its last count.
    shared_key = f"test:{unique}:outbox"
    disconnected = AmqpPublisher(UNREACHABLE_URL, f"test.{unique}", RedisOutbox(redis_connection, shared_key),
                                 idle_check_s=0.1, reconnect_base_s=0.1, reconnect_max_s=1.0)
    await disconnected.start()
    try:
        assert await disconnected.publish(Event.create("user.created", {"id": 1}, "r"), confirm_deadline_s=0.2) \
            == "outboxed"
        assert REGISTRY.get_sample_value("turnstile_outbox_depth") == 1
        await redis_connection.client.delete([shared_key])  # drained by another process

        async def follows() -> bool:
            return REGISTRY.get_sample_value("turnstile_outbox_depth") == 0

        await eventually(follows, 5, "the gauge read the outbox again")
    finally:
        await disconnected.stop(0.1)
        await redis_connection.client.delete([shared_key])
