"""What a plugin holds for an app's lifetime (its `setup_app` hook): objects put in the app,
resources opened at start-up and closed at shutdown, readiness checks, and gauges.

Each plugin gets its own `Resources`, so every entry is listed under the plugin that added
it (`turnstile plugins`). A resource's cleanup context joins the app's as it is added: after
the core's clients (it opens with them up and closes before them) and before the app's own
lifecycle, so `startup` hooks run with every resource open and `shutdown` hooks before any
closes. While a resource is open, ``turnstile_plugin_resource_open{plugin,resource}`` is 1.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final, TypeVar, final

import attrs
import pluggy
from aiohttp import web
from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.keys import readiness_key
from app.plugins import implementations
from app.readiness import Check

T = TypeVar("T")

log = logging.getLogger("turnstile.resources")

CleanupContext = Callable[[web.Application], AsyncIterator[None]]
"""An aiohttp cleanup context: an async generator that opens, yields once, and closes."""

RESOURCE_OPEN = Gauge(
    "turnstile_plugin_resource_open", "1 while a plugin's resource is open (between start-up and shutdown)",
    ["plugin", "resource"],
    multiprocess_mode="livemin",  # under --workers N: 1 only while every worker has it open
)
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@final
@attrs.frozen
class ResourceInfo:
    """One thing a plugin added, as `turnstile plugins` lists it."""

    kind: str  # "object", "resource", "readiness" or "gauge"
    name: str
    description: str


@final
class Resources:
    """What one plugin adds to an app in its `setup_app` hook.

    Every method registers at once (the app is not frozen yet); nothing is opened before the
    app starts.
    """

    def __init__(self, app: web.Application, plugin: str) -> None:
        self._app = app
        self.plugin = plugin
        self.entries: list[ResourceInfo] = []

    def provide(self, key: web.AppKey[T], value: T, *, description: str = "") -> T:
        """Put `value` in the app under `key`, for this plugin's steps (and others') to take
        at build time; returns `value`.

        Raises:
            ValueError: the app already holds `key` (another plugin provided it).
        """
        if key in self._app:
            msg = f"plugin {self.plugin}: the app already holds {key!r}"
            raise ValueError(msg)
        self._app[key] = value
        self.entries.append(ResourceInfo("object", _key_name(key), description))
        return value

    def add(self, name: str, ctx: CleanupContext, *, check: Check | None = None, description: str = "") -> None:
        """A resource with a lifecycle: `ctx` is an aiohttp cleanup context taking the app,
        whose code before its ``yield`` runs at start-up (open a file, connect a client) and
        after it at shutdown (close it). A failure to open stops the start-up.

        check: a readiness check, shown in ``/readyz`` under `name` (see `readiness`).
        """
        self._app.cleanup_ctx.append(_tracked(self.plugin, name, ctx))
        self.entries.append(ResourceInfo("resource", name, description))
        if check is not None:
            self.readiness(name, check)

    def readiness(self, name: str, check: Check, *, description: str = "") -> None:
        """A check ``/readyz`` runs: an async callable answering (a short state word such as
        "ok" or "down", whether that state still lets the service take traffic).

        Raises:
            ValueError: another check already has `name`.
        """
        checks = self._app[readiness_key].checks
        if name in checks:
            msg = f"plugin {self.plugin}: a readiness check named {name!r} exists already"
            raise ValueError(msg)
        checks[name] = check
        self.entries.append(ResourceInfo("readiness", name, description))

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A Prometheus gauge `name` whose value is ``read()`` at each scrape of ``/metrics``,
        exported while the app runs (from start-up to shutdown). For counters and histograms
        define prometheus-client metrics in the plugin's module, as the built-ins do.

        Raises:
            ValueError: `name` is not a valid metric name.
        """
        if not _METRIC_NAME.fullmatch(name):
            msg = f"plugin {self.plugin}: {name!r} is not a valid metric name"
            raise ValueError(msg)
        self._app.cleanup_ctx.append(_exported(name, documentation, read))
        self.entries.append(ResourceInfo("gauge", name, documentation))


def _key_name(key: web.AppKey[Any]) -> str:
    # AppKey's repr is "<AppKey(module.name, type=...)>"; the bare name reads better in a listing.
    return repr(key).removeprefix("<AppKey(").split(",", 1)[0].rsplit(".", 1)[-1]


def _tracked(plugin: str, name: str, ctx: CleanupContext) -> CleanupContext:
    opened = contextlib.asynccontextmanager(ctx)
    state = RESOURCE_OPEN.labels(plugin, name)

    async def tracked(app: web.Application) -> AsyncIterator[None]:
        async with opened(app):
            state.set(1)
            log.debug("plugin %s: %s open", plugin, name)
            try:
                yield
            finally:
                state.set(0)
                log.debug("plugin %s: closing %s", plugin, name)

    return tracked


@final
class _PluginGauges(Collector):
    """The gauges of running apps, read at each scrape (one process-wide collector)."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[str, Callable[[], float], object]] = {}

    def add(self, name: str, documentation: str, read: Callable[[], float], owner: object) -> None:
        self._gauges[name] = (documentation, read, owner)

    def remove(self, name: str, owner: object) -> None:
        # Only the app that added it: in tests several apps may come and go in one process.
        if name in self._gauges and self._gauges[name][2] is owner:
            del self._gauges[name]

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, (documentation, read, _owner) in sorted(self._gauges.items()):
            try:
                value = float(read())
            except Exception:  # a plugin's reader failed: leave its sample out, keep the scrape
                log.exception("gauge %s could not be read", name)
                continue
            family = GaugeMetricFamily(name, documentation)
            family.add_metric([], value)
            yield family


PLUGIN_GAUGES: Final = _PluginGauges()
REGISTRY.register(PLUGIN_GAUGES)


def _exported(name: str, documentation: str, read: Callable[[], float]) -> CleanupContext:
    async def exported(app: web.Application) -> AsyncIterator[None]:
        PLUGIN_GAUGES.add(name, documentation, read, app)
        try:
            yield
        finally:
            PLUGIN_GAUGES.remove(name, app)

    return exported


resources_key: Final = web.AppKey("plugin_resources", dict[str, Resources])


def setup_plugin_resources(app: web.Application, pm: pluggy.PluginManager) -> dict[str, Resources]:
    """Call every plugin's `setup_app`, in load order; what each added, by plugin name.

    Raises:
        TypeError: an implementation is ``async def`` (it must not do I/O: see the hook).
    """
    added: dict[str, Resources] = {}
    for impl in implementations(pm.hook.setup_app):
        resources = added.setdefault(impl.plugin_name, Resources(app, impl.plugin_name))
        arguments = {"app": app, "resources": resources}
        result = impl.function(*(arguments[name] for name in impl.argnames))
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            msg = f"plugin {impl.plugin_name}: setup_app must be synchronous (open things in Resources.add)"
            raise TypeError(msg)
    app[resources_key] = added
    return added
