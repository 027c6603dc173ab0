"""Named upstreams: one data-service client per `[upstreams.NAME]` table, and the data service.

Each named upstream gets the data service's machinery from its options alone, with no code
of its own: one pooled session, connect and total timeouts, retries for idempotent calls
only, its own circuit breaker, metrics and log lines labelled with its name, `X-Request-ID`
on every call, an optional bearer token, and upstream failures mapped to 502/503/504.

A reload stages the clients the new file needs (an upstream whose settings did not change
keeps its client, so its pool and its circuit's state go on), then commits them with the new
routes. A client left behind keeps serving the requests already running on the old routes
and is closed once the calls those requests may still make are over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import final

from aiohttp import web

from app.clients.dataservice import CIRCUIT_STATE, DataService, DataServiceClient, DataServiceOptions
from app.keys import data_service_key
from app.pipeline.types import DATA_SERVICE, UpstreamConfig

log = logging.getLogger("turnstile.upstreams")

# What a client tells a caller about a named upstream: its name is configuration, not for clients.
_PUBLIC_LABEL = "an upstream service"
# A request matched before a reload may spend a while in earlier steps (reading its body, a
# rate limit, the cache) before it calls; a client left behind stays open at least this long.
_MIN_CLOSE_DELAY_S = 60.0


def options_for(config: UpstreamConfig) -> DataServiceOptions:
    return DataServiceOptions(
        base_url=config.url,
        connect_timeout_s=config.connect_timeout_s,
        total_timeout_s=config.timeout_s,
        retries=config.retries,
        breaker_failures=config.breaker_failures,
        breaker_cooldown_s=config.breaker_cooldown_s,
        pool_limit=config.pool_limit,
        token=config.token,
    )


def _client(config: UpstreamConfig) -> DataServiceClient:
    return DataServiceClient(options_for(config), name=config.name, label=_PUBLIC_LABEL)


def longest_call_s(options: DataServiceOptions) -> float:
    """An upper bound on one call through a client with `options`: every attempt and backoff."""
    return (options.retries + 1) * options.total_timeout_s + options.retries * options.backoff_max_s


@final
class Upstreams:
    """The clients of the named upstreams, by name, with the data service as ``data_service``."""

    def __init__(self, data_service: DataServiceClient, configs: Iterable[UpstreamConfig]) -> None:
        self._data_service = data_service
        self._clients = {config.name: _client(config) for config in configs}
        # Set between `stage` and `commit`/`abort`, while a reload builds its routes.
        self._staged: dict[str, DataServiceClient] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def client(self, name: str) -> DataService:
        """The client for upstream `name` (``data_service`` included), for a step's `build`.

        During a reload, the clients the new file declares. Raises KeyError for a name the file
        does not declare (the loader refuses such a file first).
        """
        if name == DATA_SERVICE:
            return self._data_service
        clients = self._staged if self._staged is not None else self._clients
        return clients[name]

    def breaker_states(self) -> dict[str, str]:
        """Each named upstream's circuit: ``closed``, ``half_open`` or ``open``."""
        return {name: client.breaker_state for name, client in sorted(self._clients.items())}

    async def start(self) -> None:
        for client in self._clients.values():
            await client.start()

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self._clients.values():
            await client.close()

    # --- reload --------------------------------------------------------------------------------
    def stage(self, configs: Iterable[UpstreamConfig]) -> None:
        """Make the clients `configs` need; one whose options are unchanged is kept as it is."""
        staged = {}
        for config in configs:
            current = self._clients.get(config.name)
            keep = current is not None and current.options == options_for(config)
            staged[config.name] = current if keep and current is not None else _client(config)
        self._staged = staged

    async def commit(self) -> None:
        """Start the staged clients and make them the current ones; close the others later."""
        staged, self._staged = self._staged, None
        if staged is None:
            return
        for client in staged.values():
            await client.start()  # a kept client is started already: nothing happens
        previous, self._clients = self._clients, staged
        for name, client in previous.items():
            if staged.get(name) is not client:
                self._close_later(client, gone=name not in staged)

    def abort(self) -> None:
        """Forget the staged clients: none was started, so none holds a connection."""
        self._staged = None

    def _close_later(self, client: DataServiceClient, *, gone: bool) -> None:
        delay = max(_MIN_CLOSE_DELAY_S, longest_call_s(client.options))
        log.info("upstream %s: %s by the reload; its old client closes in %.0f s, after the calls it may "
                 "still be making", client.name, "removed" if gone else "changed", delay)

        async def close() -> None:
            try:
                await asyncio.sleep(delay)
            finally:  # at shutdown too, when this wait is cancelled
                await client.close()
            if gone and client.name not in self._clients:
                with contextlib.suppress(KeyError):
                    CIRCUIT_STATE.remove(client.name)  # no stale circuit for an upstream that left

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


upstreams_key = web.AppKey("upstreams", Upstreams)


def setup_upstreams(app: web.Application, configs: Iterable[UpstreamConfig]) -> None:
    """The named upstreams of the pipelines file, started and closed with the app."""
    app[upstreams_key] = Upstreams(app[data_service_key], configs)
    app.cleanup_ctx.append(upstreams_ctx)


async def upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
    upstreams = app[upstreams_key]
    await upstreams.start()
    yield
    await upstreams.close()
