"""One access-log line and the request metrics per request (contract §12)."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from app.keys import pipeline_key
from app.metrics import REQUEST_SECONDS, REQUESTS
from app.pipeline.types import Handler

access_log = logging.getLogger("turnstile.access")


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        pipeline = request[pipeline_key].name if pipeline_key in request else _route_name(request)
        REQUESTS.labels(pipeline, request.method, str(status)).inc()
        REQUEST_SECONDS.labels(pipeline, str(status)).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %s pipeline=%s %.1fms", request.method, request.path, status, pipeline, elapsed * 1000,
                extra={"pipeline": pipeline, "status": status, "duration_ms": round(elapsed * 1000, 2)},
            )


def _route_name(request: web.Request) -> str:
    """Operational routes have names too; an unmatched path is labelled 'none', not by its
    path, so scanners cannot blow up the metric's cardinality."""
    route = request.match_info.route
    return route.name or "none" if route.resource is not None else "none"
