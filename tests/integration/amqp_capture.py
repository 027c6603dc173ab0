"""Helpers for the integration tests of events and subscriptions: watch what the service
publishes, publish as another producer would, read dead letters, clean the broker up, read
`/metrics` and `/readyz`, empty the tests' Redis database, and poll with a deadline.

Two ways to capture events:
- `capture()`: an exclusive auto-delete queue bound to the test's exchange, consumed at once
  (the broker stays up for the whole test).
- `DurableCapture`: a durable, uniquely named queue declared *before* an outage, so it is
  bound when the outbox drains after the broker returns; read with `basic_get` afterwards
  and deleted at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiormq
import orjson
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Client, redis_db_url
from tests.services import flush_redis

POLL_S = 0.1


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    """Poll `check` until it is true; fail the test with `what` after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(POLL_S)


@asynccontextmanager
async def broker_channel(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aiormq.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def declare_exchange(channel: AbstractChannel, exchange: str) -> None:
    """The exchange as the service declares it (a different declaration would close the channel)."""
    await channel.exchange_declare(exchange, exchange_type="topic", durable=True)


@asynccontextmanager
async def capture(url: str, exchange: str, routing_key: str = "#") -> AsyncIterator[asyncio.Queue[DeliveredMessage]]:
    """Every message published on `exchange` from now on, as it arrives."""
    received: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
    async with broker_channel(url) as channel:
        await declare_exchange(channel, exchange)
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None
        await channel.queue_bind(declared.queue, exchange, routing_key=routing_key)
        await channel.basic_consume(declared.queue, received.put, no_ack=True)
        yield received


async def next_message(received: asyncio.Queue[DeliveredMessage], within_s: float = 10.0) -> DeliveredMessage:
    try:
        return await asyncio.wait_for(received.get(), within_s)
    except TimeoutError:
        pytest.fail(f"no message within {within_s} s")


class DurableCapture:
    """A durable queue bound to `exchange` that outlives a broker restart; read it with `get`."""

    def __init__(self, url: str, exchange: str, queue: str, routing_key: str = "#") -> None:
        self.url = url
        self.exchange = exchange
        self.queue = queue
        self.routing_key = routing_key

    async def declare(self) -> None:
        async with broker_channel(self.url) as channel:
            await declare_exchange(channel, self.exchange)
            await channel.queue_declare(self.queue, durable=True)
            await channel.queue_bind(self.queue, self.exchange, routing_key=self.routing_key)

    async def delete(self) -> None:
        async with broker_channel(self.url) as channel:
            await channel.queue_delete(self.queue)

    async def take(self, count: int, within_s: float) -> list[DeliveredMessage]:
        """Exactly `count` messages, oldest first, polled until `within_s`; fails if fewer came."""
        return await take_from(self.url, self.queue, count, within_s)

    async def depth(self) -> int:
        async with broker_channel(self.url) as channel:
            declared = await channel.queue_declare(self.queue, passive=True)
            return declared.message_count or 0


async def take_from(url: str, queue: str, count: int, within_s: float) -> list[DeliveredMessage]:
    """`count` messages taken (acked) from `queue` with basic_get, polling until `within_s`."""
    got: list[DeliveredMessage] = []
    deadline = time.monotonic() + within_s
    async with broker_channel(url) as channel:
        while len(got) < count:
            message = await channel.basic_get(queue, no_ack=True)
            if not isinstance(message.delivery, Basic.GetEmpty):
                got.append(message)
                continue
            if time.monotonic() > deadline:
                pytest.fail(f"{len(got)} of {count} messages in {queue} within {within_s} s")
            await asyncio.sleep(POLL_S)
    return got


async def is_empty(url: str, queue: str) -> bool:
    async with broker_channel(url) as channel:
        declared = await channel.queue_declare(queue, passive=True)
        return not declared.message_count


async def has_consumer(url: str, queue: str) -> bool:
    """Whether `queue` exists and someone consumes it (a passive declare; no side effects)."""
    try:
        async with broker_channel(url) as channel:
            declared = await channel.queue_declare(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    return bool(declared.consumer_count)


async def publish(url: str, exchange: str, routing_key: str, body: bytes, **properties: Any) -> None:
    """Publish as another producer would (persistent, confirmed); `properties` are Basic.Properties fields."""
    async with broker_channel(url) as channel:
        await declare_exchange(channel, exchange)
        await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=Basic.Properties(delivery_mode=2, **properties),
            mandatory=True,
        )


async def remove_topology(url: str, *, queues: list[str], exchanges: list[str]) -> None:
    """Delete what a test left on the broker; missing ones are fine."""
    async with broker_channel(url) as channel:
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


async def remove_test_topology(url: str, unique: str) -> None:
    """What a test's service (its subscription queue, dead letters, exchanges) and captures left."""
    queue = f"test.{unique}.user-changes"
    await remove_topology(
        url,
        # The each-instance queues go with their connections; their dead letters stay.
        queues=[queue, f"{queue}.dead", f"{queue}.instance.dead", f"test.{unique}.capture"],
        exchanges=[f"test.{unique}", f"test.{unique}.dlx"],
    )


async def metric(client: Client, name: str, **labels: str) -> float | None:
    """The value of one sample of `/metrics`, or None when it is absent."""
    response = await client.get("/metrics")
    assert response.status == 200
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def rabbitmq_state(client: Client) -> str:
    response = await client.get("/readyz")
    state: str = (await response.json())["checks"]["rabbitmq"]
    return state


async def wait_connected(client: Client, within_s: float = 60) -> None:
    async def connected() -> bool:
        return await rabbitmq_state(client) == "connected"

    await eventually(connected, within_s, "the publisher connected to RabbitMQ")


async def wait_disconnected(client: Client) -> None:
    async def gone() -> bool:
        return await rabbitmq_state(client) in {"connecting", "disconnected"}

    await eventually(gone, 15, "the publisher noticed that RabbitMQ is gone")


async def fresh_redis_db(request: pytest.FixtureRequest) -> str:
    """What the `redis_db` fixture gives, for a test whose parameter decides if it needs Redis
    (an async fixture cannot be fetched with getfixturevalue from a running loop)."""
    url = redis_db_url(request.getfixturevalue("redis_url"))
    await flush_redis(url)
    return url


def body_of(message: DeliveredMessage) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(message.body)
    return decoded
