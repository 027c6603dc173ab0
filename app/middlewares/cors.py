"""Cross-origin requests from the browser apps CORS_ALLOWED_ORIGINS names (the Fetch standard).

Off unless origins are configured: then a browser app served from one of them may call the API
with a bearer token. Tokens travel in the `Authorization` header, never in cookies, so no
credentials mode is offered and `*` is safe to allow. A preflight (OPTIONS with
`Access-Control-Request-Method`) from an allowed origin is answered 204 here; one from any
other origin goes on to the routes like any OPTIONS request (a 405), which the browser reads as
a refusal. Answers to allowed origins name the origin and expose the headers a client reads
(`X-Request-ID`, `X-Cache`, `Retry-After`, `WWW-Authenticate`).

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
ALLOWED_HEADERS: Final = "Authorization, Content-Type, X-Request-ID"
EXPOSED_HEADERS: Final = "X-Request-ID, X-Cache, Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE_S: Final = 600
ANY: Final = "*"


@final
class CorsPolicy:
    """Which origins may call, and the headers their requests get."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origins)
        self.any = ANY in self.origins

    def allow_origin(self, origin: str | None) -> str | None:
        """The `Access-Control-Allow-Origin` value for a request from `origin`, or None."""
        if origin is None or not (self.any or origin in self.origins):
            return None
        return ANY if self.any else origin

    def middleware(self) -> Middleware:
        policy = self

        @web.middleware
        async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            allowed = policy.allow_origin(request.headers.get("Origin"))
            if allowed is None:
                return await handler(request)
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
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
