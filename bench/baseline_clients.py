"""The baseline's three clients, one per process as Turnstile keeps them: coredis, one pooled
aiohttp session to the data service, and one confirming AMQP channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiohttp
import aiormq
import coredis
from aiohttp import web
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


class PublishFailed(Exception):
    """The broker did not confirm a message (unroutable, nacked, or the connection broke)."""


class Broker:
    """One AMQP connection with a confirming channel, opened again on the next publish after
    it broke (the broker is shared: someone may restart it during a run)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                await self.close()
                self._connection = await aiormq.connect(self.url)
                self._channel = await self._connection.channel(publisher_confirms=True)
            return self._channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def publish(self, body: bytes, *, exchange: str, routing_key: str, properties: Basic.Properties) -> None:
        """Publish with `mandatory` and return once the broker confirmed; else PublishFailed."""
        try:
            channel = await self.open()
            confirm = await channel.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                                  properties=properties, mandatory=True)
        except (aiormq.AMQPError, OSError) as exc:
            raise PublishFailed(str(exc)) from exc
        if not isinstance(confirm, Basic.Ack):
            msg = f"not confirmed: {confirm!r}"
            raise PublishFailed(msg)


redis_key: Final = web.AppKey("redis", coredis.Redis)
session_key: Final = web.AppKey("session", aiohttp.ClientSession)
broker_key: Final = web.AppKey("broker", Broker)


def redis_ctx(url: str) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False)
        # coredis must be entered and left in one task; a cleanup context's two halves may run
        # in two (they do under pytest-aiohttp), so one task owns the client for the app's life.
        ready, stop = asyncio.Event(), asyncio.Event()

        async def own() -> None:
            async with client:
                ready.set()
                await stop.wait()

        owner = asyncio.create_task(own())
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([owner, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if owner.done():
            owner.result()  # it could not connect: say why
        app[redis_key] = client
        try:
            yield
        finally:
            stop.set()
            await owner

    return ctx


def session_ctx(data_token: str) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # As Turnstile's data-service client: connect and total timeouts, the token on every call.
        timeout = aiohttp.ClientTimeout(total=5.0, sock_connect=1.0)
        headers = {"Authorization": f"Bearer {data_token}"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            app[session_key] = session
            yield

    return ctx


def amqp_ctx(url: str) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        broker = Broker(url)
        await broker.open()
        app[broker_key] = broker
        try:
            yield
        finally:
            await broker.close()

    return ctx
