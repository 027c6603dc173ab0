"""The reference data service's one credential: a bearer token every API call must carry (contract §7).

Turnstile holds every password hash in this service, so without a token any process that can
reach the port (or any request forgery from a neighbour) could read the hashes or make itself
admin. Given a token (and, during a rotation, the previous ones), every call except the liveness
probe `/healthz` must send `Authorization: Bearer <token>`; anything else is a 401. The comparison takes the same time
whatever the bytes sent (hmac.compare_digest), so the token cannot be guessed byte by byte.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from app.errors import Unauthorized

# Probes cannot carry a token, and the answer says nothing but "alive".
OPEN_PATHS: Final = frozenset({"/healthz"})


def _presented(header: str) -> bytes | None:
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    # Header values are text that may hold anything; bytes compare in constant time whatever they hold.
    return credentials.strip().encode("utf-8", "replace")


def bearer_token_middleware(token: str, *, previous: Sequence[str] = ()) -> Middleware:
    """A middleware that answers 401 to every call (but `/healthz`) without `Bearer <token>`
    (or one of the `previous` tokens, still accepted during a rotation)."""
    accepted = [candidate.encode() for candidate in (token, *previous)]

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            presented = _presented(request.headers.get("Authorization", ""))
            if presented is None:
                msg = "This service needs a bearer token."
                # RFC 6750 §3.1: no error code when the request carried no credential at all.
                raise Unauthorized(msg).with_headers({"WWW-Authenticate": "Bearer"})
            # Every token compared, whichever matches: the time says nothing about which one.
            if not sum(hmac.compare_digest(presented, expected) for expected in accepted):
                msg = "The bearer token is not valid."
                raise Unauthorized(msg)
        return await handler(request)

    return require_token
