"""X-Request-ID (contract §6): kept when safe, else generated; echoed on every response."""

from __future__ import annotations

import contextvars
import random
import re

from aiohttp import web

from app.keys import readiness_key, request_id_key
from app.pipeline.types import Handler
from app.readiness import Phase

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# Read by the log filter so every log line of a request carries its id.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def accept_or_generate(value: str | None) -> str:
    if value is not None and _SAFE.match(value):
        return value
    # 128 random bits in hex, as uuid4().hex, from the process's Mersenne Twister: an id must be
    # unique, not secret (a client may send its own), and os.urandom is a system call on every
    # request that brings no id. `random` reseeds itself in a forked worker.
    return random.randbytes(16).hex()  # noqa: S311  # unique, not secret (above)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = accept_or_generate(request.headers.get(REQUEST_ID_HEADER))
    request[request_id_key] = request_id
    current_request_id.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Only redirects and the like get here: errors are rendered inside.
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    response.headers[REQUEST_ID_HEADER] = request_id
    if request.app[readiness_key].phase is Phase.DRAINING and not response.prepared:
        # The listener closes at the end of the drain: a client that sends its next request on
        # this connection then would have it cut off unanswered. `Connection: close` makes it
        # open a new one, to an instance that stays (the load balancer sees /readyz's 503).
        response.force_close()
    return response
