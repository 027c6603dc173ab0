"""`turnstile` subcommands added by plugins (the `register_commands` hook).

A plugin's command gets the parsed arguments and a `CommandContext`: the settings, the app
as `create_app` prepares it before its pipelines (plugin settings and every plugin's
`setup_app` applied, nothing started), and a data-service client and an event publisher for
the command's duration.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import cast, final

import attrs
import pluggy
from aiohttp import web

from app.clients.amqp import Publisher
from app.clients.dataservice import DataService, DataServiceClient, DataServiceOptions
from app.clients.redis import RedisConnection
from app.plugin_loading import call_at_load
from app.settings import Settings

# Where a command's events wait while RabbitMQ cannot take them and no Redis is configured: a
# file outbox is one process's (app/clients/outbox.py), so not the server's; the next command
# that publishes delivers what it holds.
COMMAND_OUTBOX_FILE = "outbox-commands.jsonl"


@final
@attrs.frozen(kw_only=True)
class Command:
    """A ``turnstile`` subcommand a plugin adds through `register_commands`.

    name: what follows ``turnstile`` (e.g. "create-admin").
    help: one line for ``turnstile --help``.
    run: does the work and returns the exit status (0 done, 1 failed, 2 bad input); an
        ``async def`` one is run to its end on an event loop of its own.
    arguments: adds the command's options to its `argparse.ArgumentParser`.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace, CommandContext], int | Awaitable[int]]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


@final
class CommandContext:
    """What a plugin's command may use besides its arguments."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, prepare: Callable[[], web.Application]) -> None:
        self.settings = settings
        self.pm = pm
        self._prepare = prepare

    @functools.cached_property
    def app(self) -> web.Application:
        """The app as `create_app` prepares it before its pipelines: settings, plugin
        settings, the core's clients and what every plugin's `setup_app` provided (a password
        hasher, say). Made on first use; never started, so it does no I/O."""
        return self._prepare()

    @contextlib.asynccontextmanager
    async def data_service(self) -> AsyncIterator[DataService]:
        """A started data-service client for the block: ``DATA_SERVICE_URL``'s, or without
        it the embedded data service, run on its SQLite file for as long as the block lasts
        (with a token of its own, as the server's)."""
        settings = self.settings
        runner = None
        base_url, token = settings.data_service_url, settings.data_service_token
        if base_url is None:
            from app.dataservice import start_dataservice  # noqa: PLC0415  # only when embedded

            token = secrets.token_urlsafe(32)
            runner, base_url = await start_dataservice(settings.var_dir / "data.sqlite3", token=token)
        options = DataServiceOptions(
            base_url=base_url,
            connect_timeout_s=settings.data_service_connect_timeout_s,
            total_timeout_s=settings.data_service_timeout_s,
            retries=settings.data_service_retries,
            token=token,
        )
        try:
            async with DataServiceClient(options) as client:
                yield client
        finally:
            if runner is not None:
                await runner.cleanup()

    @contextlib.asynccontextmanager
    async def publisher(self) -> AsyncIterator[Publisher]:
        """A started event publisher for the block, as the server's: to RabbitMQ, with the
        events it cannot take yet in the Redis outbox the servers deliver from (without Redis,
        in `COMMAND_OUTBOX_FILE`), or without a broker to the events file. On leaving, what is
        unconfirmed is flushed for a few seconds, and the rest stays in the outbox."""
        from app.wiring import PUBLISHER_FLUSH_DEADLINE_S, make_publisher  # noqa: PLC0415  # its clients, only here

        settings = self.settings
        redis = RedisConnection(settings.redis_url) if settings.redis_url and settings.rabbitmq_url else None
        if redis is not None:
            await redis.start()
        publisher = make_publisher(settings, redis, outbox_file=COMMAND_OUTBOX_FILE)
        try:
            await publisher.start()
            try:
                yield publisher
            finally:
                await publisher.stop(PUBLISHER_FLUSH_DEADLINE_S)
        finally:
            if redis is not None:
                await redis.stop()


def plugin_commands(pm: pluggy.PluginManager) -> list[tuple[str, Command]]:
    """(plugin name, command) for every command a plugin adds, in load order."""
    return [
        (impl.plugin_name, command)
        for impl in pm.hook.register_commands.get_hookimpls()
        for command in cast("Sequence[Command]", call_at_load(impl) or ())
    ]
