"""The reactive side: each subscription of pipelines.toml becomes a consumer actor whose
handler is the subscription's steps, composed once like a pipeline's.

A subscription's `delivery` is `shared` (one durable queue, a quorum queue unless
RABBITMQ_QUEUE_TYPE=classic: each event handled once for the deployment) or `each-instance` (a
queue per process: every instance hears every event, for state each process keeps).

A message is acked after its steps succeed. A step that fails because a dependency is down
(Redis, the data service: `depends_on_something_down`) makes the message wait for it, with
backoff, for up to the subscription's `max_wait_s`; any other failure is retried a bounded
number of times, then the message is dead-lettered. Without RABBITMQ_URL (embedded) there is
no broker to consume from, and subscriptions are announced as idle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from app.clients.amqp import Consumer
from app.clients.cache import CacheUnavailable
from app.clients.redis import RedisUnavailable
from app.errors import GatewayTimeout, ServiceUnavailable
from app.keys import pipelines_key, settings_key
from app.models.events import Event
from app.pipeline.types import MessageHandler, MessageStep, SubscriptionConfig, SubscriptionContext
from app.tracing import traced_subscription

log = logging.getLogger("turnstile.subscriptions")

consumers_key = web.AppKey("consumers", list[Consumer])


# What a step raises when a dependency is down (not the message's fault): the message waits.
DEPENDENCY_DOWN = (RedisUnavailable, CacheUnavailable, ServiceUnavailable, GatewayTimeout, TimeoutError)


def depends_on_something_down(exc: BaseException) -> bool:
    return isinstance(exc, DEPENDENCY_DOWN)


async def _done(event: Event) -> None:
    """The end of a subscription's chain: nothing left to do, so the message is acked."""


def _link(step: MessageStep, rest: MessageHandler) -> MessageHandler:
    async def run(event: Event) -> None:
        await step(event, rest)

    return run


def _bounded(handler: MessageHandler, timeout_s: float) -> MessageHandler:
    """One try of a message's steps takes `timeout_s` at most (TURNSTILE_REQUEST_TIMEOUT_S): a
    step that never returns would hold its prefetch slot for good, and with every slot so held
    the subscription would stop. Its TimeoutError is a dependency not answering: the message
    waits and is tried again, and is dead-lettered when the wait runs out."""

    async def run(event: Event) -> None:
        async with asyncio.timeout(timeout_s):
            await handler(event)

    return run


def build_subscription(subscription: SubscriptionConfig, app: web.Application) -> MessageHandler:
    context = SubscriptionContext(app, subscription.name)
    handler: MessageHandler = _done
    for configured in reversed(subscription.steps):
        build = configured.type.build_for_message
        assert build is not None  # the loader refuses step types without it
        handler = _link(build(configured.config, context), handler)
    return handler


def setup_subscriptions(app: web.Application) -> None:
    """Build every subscription's chain now; start the consumers with the app."""
    settings = app[settings_key]
    consumers = []
    for subscription in app[pipelines_key].subscriptions:
        handler = traced_subscription(app, subscription, _bounded(build_subscription(subscription, app),
                                                                  settings.request_timeout_s))
        if settings.rabbitmq_url is None:
            continue
        consumers.append(Consumer(
            settings.rabbitmq_url, exchange=settings.events_exchange, queue=subscription.queue,
            bindings=subscription.bindings, handler=handler, delivery=subscription.delivery,
            queue_type="classic" if settings.rabbitmq_queue_type == "classic" else "quorum",
            prefetch=subscription.prefetch, max_retries=subscription.max_retries,
            retry_delay_s=subscription.retry_delay_s, waits_for=depends_on_something_down,
            max_wait_s=subscription.max_wait_s,
        ))
    app[consumers_key] = consumers
    app.cleanup_ctx.append(subscriptions_ctx)


async def subscriptions_ctx(app: web.Application) -> AsyncIterator[None]:
    consumers = app[consumers_key]
    if app[pipelines_key].subscriptions and not consumers:
        log.info("no RABBITMQ_URL: %d subscription(s) idle", len(app[pipelines_key].subscriptions))
    for consumer in consumers:
        await consumer.start()
    yield
    for consumer in consumers:
        await consumer.stop()
