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
from app.plugins import call_all, call_impl, implementations
from app.readiness import Phase

log = logging.getLogger("turnstile.lifecycle")


async def lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    pm = app[plugin_manager_key]
    await call_all(pm.hook.startup, app=app)
    app[readiness_key].phase = Phase.READY
    yield
    app[readiness_key].phase = Phase.DRAINING
    # In the reverse of the call order (the last plugin to start up shuts down first), and
    # every one even when another fails: each plugin gets to close what it holds.
    for impl in reversed(implementations(pm.hook.shutdown)):
        try:
            await call_impl(pm.hook.shutdown, impl, {"app": app})
        except Exception:
            log.exception("shutdown hook of plugin %s failed", impl.plugin_name)
