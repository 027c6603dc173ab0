"""Reload on SIGHUP (contract §10): re-read and check the pipelines file, then swap the routes.

The file goes through `load_checked`, as at start-up and in `turnstile check`. A valid file
becomes a new routing table, new upstream clients where their settings changed, and a new
OpenAPI document; all three replace the old ones together, with no await between them and
the request path (app/pipeline/routes.py), so a request runs wholly on the old routes or
wholly on the new. An invalid file changes nothing: its FILE:LINE errors are logged.

Subscriptions are not reloaded: their consumers keep the steps they started with until the
next restart (a consumer holds its queue, bindings and prefetch, and a message in flight must
not change chains), and the log line says so when the file changed them. `/readyz` shows the
digest of the file the routes came from; `turnstile_config_reloads_total{outcome}` counts.
`app[pipelines_key]` stays the file the process started with (its subscriptions run); the
file the routes came from is `app[routes_key].table.file`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from typing import Any, final

from aiohttp import web
from prometheus_client import Counter, Gauge

from app.asyncapi import build_asyncapi, replace_asyncapi
from app.keys import models_key, pipelines_key, plugin_manager_key, settings_key
from app.openapi import build_document, replace_document
from app.pipeline.config import ConfigError, PipelineFileError
from app.pipeline.registry import load_checked
from app.pipeline.routes import RoutingTable, build_routing_table, routes_key
from app.pipeline.types import PipelineFile
from app.plugin_routes import plugin_routes_key
from app.upstreams import upstreams_key

log = logging.getLogger("turnstile.reload")


class Outcome(enum.StrEnum):
    OK = "ok"
    INVALID = "invalid"  # the file has errors, or a step could not be built: nothing changed


RELOADS = Counter("turnstile_config_reloads_total", "Reloads of the pipelines file, by outcome", ["outcome"])
for _outcome in Outcome:
    RELOADS.labels(outcome=_outcome.value)  # both exported from the start, at 0
# What an alert can hold on to while the file on disk stays bad (the counter's increase fades):
# the name and meaning of Prometheus's own prometheus_config_last_reload_successful.
LAST_RELOAD_OK = Gauge(
    "turnstile_config_last_reload_successful",
    "1 when the latest load of the pipelines file (start-up or SIGHUP) succeeded, 0 when it was refused",
    multiprocess_mode="livemin",  # under --workers N: 0 when any worker refused it
)


@final
class Reloader:
    """Reloads one app's pipelines, one reload at a time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._lock = asyncio.Lock()

    async def reload(self) -> Outcome:
        """Re-read the pipelines file and, when it is valid, serve its routes from now on."""
        async with self._lock:  # a second SIGHUP waits, then reads the file as it is by then
            outcome = await self._reload()
        RELOADS.labels(outcome=outcome.value).inc()
        LAST_RELOAD_OK.set(1 if outcome is Outcome.OK else 0)
        return outcome

    async def _reload(self) -> Outcome:
        app = self._app
        path = app[settings_key].pipelines_file
        pm = app[plugin_manager_key]
        routes = app[routes_key]
        try:
            registry, file = load_checked(path, pm)
        except PipelineFileError as exc:
            _log_refused(routes.table, exc.errors)
            return Outcome.INVALID
        upstreams = app[upstreams_key]
        upstreams.stage(file.upstreams)
        try:
            table = build_routing_table(file, app, pm, app[models_key])
        except PipelineFileError as exc:  # a plugin's build() failed, logged with its traceback
            upstreams.abort()
            _log_refused(routes.table, exc.errors)
            return Outcome.INVALID
        try:
            document = build_document(file, app[models_key], routes=app[plugin_routes_key])
            events_document = build_asyncapi(file, registry.models, exchange=app[settings_key].events_exchange)
        except Exception:  # a plugin's document callback failed: the old routes are still whole
            upstreams.abort()
            log.exception("reload refused: the API documents of %s could not be made; still serving sha256 %s",
                          path, _short(routes.table.sha256))
            return Outcome.INVALID
        await upstreams.commit()
        # The swap: nothing awaits from here to the end, so no request sees half of it.
        routes.table = table
        replace_document(app, document)
        replace_asyncapi(app, events_document)
        _log_loaded(table, app[pipelines_key])
        return Outcome.OK


reloader_key = web.AppKey("reloader", Reloader)


def setup_reload(app: web.Application) -> None:
    app[reloader_key] = Reloader(app)
    app.on_startup.append(_loaded_at_start)


async def _loaded_at_start(app: web.Application) -> None:
    LAST_RELOAD_OK.set(1)  # an app that starts serving loaded its file


async def reload_pipelines(app: web.Application) -> Outcome:
    """What SIGHUP does: reload the app's pipelines file (see `Reloader.reload`)."""
    return await app[reloader_key].reload()


async def reload_on_signal(
    app: web.Application, hangups: asyncio.Event, *, after_reload: Callable[[], object] = lambda: None
) -> None:
    """Reload each time `hangups` is set (by a SIGHUP handler); several signals during one
    reload make one more, which reads the file as it is then. `after_reload` runs after each
    reload that swapped the routes."""
    while True:
        await hangups.wait()
        hangups.clear()
        log.info("SIGHUP: reloading %s", app[settings_key].pipelines_file)
        try:
            outcome = await reload_pipelines(app)
        except Exception:  # a bug must not end reloading for the life of the process
            log.exception("reload failed; still serving the routes loaded before")
            continue
        if outcome is Outcome.OK:
            after_reload()


def _short(sha256: str) -> str:
    return sha256[:12]


def _log_refused(table: RoutingTable, errors: Sequence[ConfigError]) -> None:
    log.error("reload refused: %d error(s); still serving %s (sha256 %s)",
              len(errors), table.file.path, _short(table.sha256))
    for error in errors:
        log.error("%s", error)


def _log_loaded(table: RoutingTable, started: PipelineFile) -> None:
    file = table.file
    log.info("reloaded %s (sha256 %s): %d pipelines, %d upstreams",
             file.path, _short(file.sha256), len(file.pipelines), len(file.upstreams))
    if _subscriptions(file) != _subscriptions(started):
        log.warning("%s changes its subscriptions: a reload keeps the running ones, restart to apply them",
                    file.path)


def _subscriptions(file: PipelineFile) -> list[tuple[Any, ...]]:
    """What a subscription runs, without the file lines (which move when other tables change)."""
    return [
        (s.name, s.queue, s.bindings, s.prefetch, s.max_retries, s.retry_delay_s,
         tuple((step.type.name, step.config) for step in s.steps))
        for s in file.subscriptions
    ]
