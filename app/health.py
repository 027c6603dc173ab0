"""/healthz (the process is alive) and /readyz (it should get traffic now)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.keys import readiness_key

_OK = b'{"status":"ok"}'


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """``{"status", "checks": {dependency: state}, "details"?: {dependency: {...}}}``."""
    readiness = request.app[readiness_key]
    ready, checks = await readiness.report()
    status = "ready" if ready else ("not_ready" if readiness.phase.value == "ready" else readiness.phase.value)
    body: dict[str, Any] = {"status": status, "checks": checks}
    details = readiness.describe()
    if details:
        body["details"] = details
    return web.json_response(body, status=200 if ready else 503)


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name="healthz", allow_head=False)
    app.router.add_get("/readyz", readyz, name="readyz", allow_head=False)
