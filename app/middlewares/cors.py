"""Cross-origin requests from the browser apps CORS_ALLOWED_ORIGINS names (the Fetch standard).

Off unless origins are configured: then a browser app served from one of them may call the API
with a bearer token. Tokens travel in the `Authorization` header, never in cookies, so no
credentials mode is offered and `*` is safe to allow. A preflight (OPTIONS with
`Access-Control-Request-Method`) from an allowed origin is answered 204 here; one from any
other origin goes on to the routes like any OPTIONS request (a 405), which the browser reads as
a refusal. Answers to allowed origins name the origin and expose the headers a client reads
(`X-Request-ID`, `X-Cache`, `Cache-Status`, `Retry-After`, `WWW-Authenticate`, `Location`,
`Allow`); every answer says it varies with `Origin` (a cache must not hand one origin's answer,
or an answer without CORS headers, to another), or carries `*` whatever the request when any
origin may call. A preflight may ask for the headers a client sends: `Authorization`,
`Content-Type`, `Content-Encoding` (gzip bodies), `X-Request-ID`, and the trace context
(`traceparent`, `tracestate`), which the service continues.

Hand-written rather than aiohttp-cors: that library attaches to router resources one by one,
and the pipelines' routes live in one reloadable table behind a single resource
(app/pipeline/routes.py), so a rule per route would have to be redone on every reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, final

from aiohttp import web
from aiohttp.typedefs import Middleware

from app.pipeline.types import Handler

ALLOWED_METHODS: Final = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS: Final = "Authorization, Content-Type, Content-Encoding, X-Request-ID, traceparent, tracestate"
EXPOSED_HEADERS: Final = "X-Request-ID, X-Cache, Cache-Status, Retry-After, WWW-Authenticate, Location, Allow"
PREFLIGHT_MAX_AGE_S: Final = 600
ANY: Final = "*"


@final
class CorsPolicy:
    """Which origins may call, and the headers their requests get."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origins)
        self.any = ANY in self.origins

    def allow_origin(self, origin: str | None) -> str | None:
        """The `Access-Control-Allow-Origin` value for a request from `origin` (None: no
        Origin header), or None when that origin may not call."""
        if self.any:
            return ANY
        return origin if origin is not None and origin in self.origins else None

    def middleware(self) -> Middleware:
        policy = self

        @web.middleware
        async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            allowed = policy.allow_origin(origin)
            if allowed is None:
                response = await handler(request)
                if not response.prepared:
                    response.headers.add("Vary", "Origin")
                return response
            preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
            if origin is not None and preflight:
                return web.Response(status=204, headers={
                    "Access-Control-Allow-Origin": allowed,
                    "Access-Control-Allow-Methods": ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                    "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                })
            response = await handler(request)
            if not response.prepared:  # a streamed answer's headers are already sent
                response.headers["Access-Control-Allow-Origin"] = allowed
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
                if not policy.any:
                    response.headers.add("Vary", "Origin")
            return response

        return cors_middleware
