"""The reactive side: each subscription of pipelines.toml becomes a consumer actor whose
handler is the subscription's steps, composed once like a pipeline's.

A message is acked after its steps succeed; a step that raises makes it fail, and the
consumer retries it a bounded number of times, then dead-letters it. Without RABBITMQ_URL
(embedded) there is no broker to consume from, and subscriptions are announced as idle.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from app.clients.amqp import Consumer
from app.keys import pipelines_key, settings_key
from app.models.events import Event
from app.pipeline.types import MessageHandler, MessageStep, SubscriptionConfig, SubscriptionContext

log = logging.getLogger("turnstile.subscriptions")

consumers_key = web.AppKey("consumers", list[Consumer])


async def _done(event: Event) -> None:
    """The end of a subscription's chain: nothing left to do, so the message is acked."""


def _link(step: MessageStep, rest: MessageHandler) -> MessageHandler:
    async def run(event: Event) -> None:
        await step(event, rest)

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
        handler = build_subscription(subscription, app)
        if settings.rabbitmq_url is None:
            continue
        consumers.append(Consumer(
            settings.rabbitmq_url, exchange=settings.events_exchange, queue=subscription.queue,
            bindings=subscription.bindings, handler=handler, prefetch=subscription.prefetch,
            max_retries=subscription.max_retries, retry_delay_s=subscription.retry_delay_s,
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
