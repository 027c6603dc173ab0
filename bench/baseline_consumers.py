"""The baseline's own events consumed as Turnstile's default subscriptions consume Turnstile's:
a reference for PATCH that does the same broker work, hand-written.

Turnstile's default pipelines subscribe every instance to its own `user.updated` twice: a shared
durable queue (a quorum queue, competing consumers) and a queue of this process alone
(exclusive, classic), each on its own connection with a prefetch of 16. So each PATCH it
answers comes back to it as two deliveries to decode and ack. The baseline started with
``--consume-events QUEUE`` does the same with the least work a hand-written consumer can do:
each message is parsed as JSON and acked, nothing else (Turnstile's steps recognise their own
event and skip it, which costs a little more).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiormq
import orjson
from aiohttp import web
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
PREFETCH: Final = 16  # as the default pipelines' subscriptions
# Messages acked so far, by queue ("shared" or "own"): what the tests check it consumed.
consumed_key: Final = web.AppKey("baseline_consumed", collections.Counter[str])


async def _consume(url: str, exchange: str, routing_key: str, queue: str | None,
                   consumed: collections.Counter[str]) -> AbstractConnection:
    """One connection consuming `queue` (None: an exclusive queue of this process) bound to
    `routing_key`; each message parsed and acked."""
    connection = await aiormq.connect(url)
    channel: AbstractChannel = await connection.channel()
    if queue is None:
        declared = await channel.queue_declare("", durable=False, exclusive=True, auto_delete=True)
    else:
        declared = await channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    assert declared.queue is not None
    await channel.queue_bind(declared.queue, exchange, routing_key=routing_key)
    await channel.basic_qos(prefetch_count=PREFETCH)
    kind = "own" if queue is None else "shared"

    async def on_message(message: DeliveredMessage) -> None:
        orjson.loads(message.body)  # what any consumer does before it can act on an event
        assert message.delivery_tag is not None  # set on every basic.deliver
        await channel.basic_ack(message.delivery_tag)
        consumed[kind] += 1

    await channel.basic_consume(declared.queue, on_message, no_ack=False)
    return connection


def consumers_ctx(url: str, exchange: str, routing_key: str, shared_queue: str) -> CleanupCtx:
    """Both consumers for the app's life; the shared queue is deleted with them."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        consumed = app[consumed_key] = collections.Counter()
        connections = [await _consume(url, exchange, routing_key, shared_queue, consumed),
                       await _consume(url, exchange, routing_key, None, consumed)]
        try:
            yield
        finally:
            for connection in connections:
                with contextlib.suppress(Exception):
                    await connection.close()
            with contextlib.suppress(Exception):
                cleanup = await aiormq.connect(url)
                await (await cleanup.channel()).queue_delete(shared_queue)
                await cleanup.close()

    return ctx
