"""/healthz (the process is alive) and /readyz (it should get traffic now).

Besides the checks, /readyz says which pipelines file the routes came from (the first 12
hex digits of its SHA-256, as `sha256sum` prints it, and when it was loaded: a reload changes
both) and each named upstream's circuit. An open upstream circuit leaves the pod ready: every
pod calls the same upstream, so taking them out would only add an outage to the routes that
do not use it.

Both answer HEAD as well (the same status and headers, no body): uptime checkers and some load
balancers probe with it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.answers import json_response
from app.expect import expect_handler
from app.keys import readiness_key
from app.pipeline.routes import routes_key
from app.reserved_routes import HEALTHZ_PATH, READYZ_PATH
from app.untraced import untraced_outside_a_trace
from app.upstreams import upstreams_key

_OK = b'{"status":"ok"}'


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """``{"status", "checks": {dependency: state}, "details"?: {dependency: {...}}}``."""
    readiness = request.app[readiness_key]
    with untraced_outside_a_trace():  # the probes make no span: neither do their checks
        ready, checks = await readiness.report()
    status = "ready" if ready else ("not_ready" if readiness.phase.value == "ready" else readiness.phase.value)
    body: dict[str, Any] = {"status": status, "checks": checks}
    upstreams = request.app[upstreams_key].breaker_states()
    if upstreams:
        body["upstreams"] = upstreams
    table = request.app[routes_key].table
    body["pipelines"] = {"sha256": table.sha256[:12], "loaded_at": table.loaded_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    details = readiness.describe()
    if details:
        body["details"] = details
    return json_response(body, status=200 if ready else 503)


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get(HEALTHZ_PATH, healthz, name="healthz", expect_handler=expect_handler)
    app.router.add_get(READYZ_PATH, readyz, name="readyz", expect_handler=expect_handler)
