"""One access-log line and the request metrics per request (contract §12).

Through the logging module an access line costs a LogRecord, the filters, the formatter and a
write: on the cached read that was a third of the request (docs/performance.md). When the line
can only end in the production JSON handler, it is made directly (`app.logs.json_line`, the
same line) and written with the others of the loop iteration; otherwise it goes through logging.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from aiohttp import web
from prometheus_client import Counter, Histogram

from app.keys import pipeline_key, request_id_key
from app.logs import direct_handler, json_line
from app.metrics import REQUEST_SECONDS, REQUESTS
from app.pipeline.types import Handler
from app.proxies import client_address

ACCESS_LOGGER: Final = "turnstile.access"
access_log = logging.getLogger(ACCESS_LOGGER)


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
        count, seconds = _series(pipeline, request.method, status)
        count.inc()
        seconds.observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            _log_access(request, pipeline, status, elapsed)


def _log_access(request: web.Request, pipeline: str, status: int, elapsed: float) -> None:
    # `client`: the address the rate limits count (trusted proxies applied), which an operator
    # looks up when a limiter refuses (docs/operations.md).
    extra = {"pipeline": pipeline, "status": status, "duration_ms": round(elapsed * 1000, 2),
             "client": client_address(request)}
    handler = direct_handler(access_log)
    if handler is None:
        access_log.info("%s %s %s pipeline=%s %.1fms", request.method, request.path, status, pipeline,
                        elapsed * 1000, extra=extra)
        return
    message = f"{request.method} {request.path} {status} pipeline={pipeline} {elapsed * 1000:.1f}ms"
    request_id = request.get(request_id_key, "-")
    handler.write_line(json_line(ACCESS_LOGGER, message, request_id, extra, time.time()))


# The labelled series of each (pipeline, method, status) seen: `labels()` takes a lock and
# builds a key on every call. Bounded like the series themselves (methods are the client's).
_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_MAX_SERIES: Final = 4096


def _series(pipeline: str, method: str, status: int) -> tuple[Counter, Histogram]:
    key = (pipeline, method, status)
    series = _SERIES.get(key)
    if series is None:
        if len(_SERIES) >= _MAX_SERIES:
            _SERIES.clear()
        series = _SERIES[key] = (REQUESTS.labels(pipeline, method, str(status)),
                                 REQUEST_SECONDS.labels(pipeline, str(status)))
    return series


def _route_name(request: web.Request) -> str:
    """Operational routes have names too; an unmatched path is labelled 'none', not by its
    path, so scanners cannot blow up the metric's cardinality."""
    route = request.match_info.route
    return route.name or "none" if route.resource is not None else "none"
