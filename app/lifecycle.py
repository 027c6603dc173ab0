"""Start-up and shutdown of the app itself: plugin hooks, then readiness.

Registered after every client's cleanup_ctx and every plugin resource's (app/resources.py),
so the startup hooks run with clients up and resources open, and the shutdown hooks run
before any of them closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from app.keys import plugin_manager_key, readiness_key
from app.plugin_loading import PluginLoadError
from app.plugins import HookTimeout, call_impl, implementations
from app.readiness import Phase
from app.settings import SettingsError

log = logging.getLogger("turnstile.lifecycle")


async def lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    pm = app[plugin_manager_key]
    for impl in implementations(pm.hook.startup):
        try:
            await call_impl(pm.hook.startup, impl, {"app": app})
        except SettingsError:
            raise  # a deployment's setting a plugin checked at start-up: the message names it
        except Exception as exc:  # a plugin's code: the server does not start, and says whose
            log.exception("startup hook of plugin %s failed", impl.plugin_name)
            msg = f"plugin {impl.plugin_name}: its startup hook failed: {type(exc).__name__}: {exc}"
            raise PluginLoadError(msg) from exc
    app[readiness_key].phase = Phase.READY
    yield
    app[readiness_key].phase = Phase.DRAINING
    # In the reverse of the call order (the last plugin to start up shuts down first), and
    # every one even when another fails: each plugin gets to close what it holds.
    for impl in reversed(implementations(pm.hook.shutdown)):
        try:
            await call_impl(pm.hook.shutdown, impl, {"app": app})
        except HookTimeout:
            pass  # logged where it timed out, naming the hook and the plugin
        except Exception:
            log.exception("shutdown hook of plugin %s failed", impl.plugin_name)
