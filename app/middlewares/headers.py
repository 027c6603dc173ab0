"""`Cache-Control: no-store` and `X-Content-Type-Options: nosniff` on every pipeline answer
with a JSON body (contract §4).

Pipeline answers carry users (reads, cache HITs included, lists, creates, PATCH answers,
/auth/me) and tokens (RFC 6749 §5.1 requires `no-store` on token responses), and a shared
cache or a browser's history must keep none of them. One rule set here, for every pipeline
and every step a team adds, is harder to get wrong than one per step: a JSON answer of a
pipeline is never stored unless a step chose its own `Cache-Control`. Problem documents of a
pipeline get it too; operational routes (/healthz, /metrics, the docs) carry no user and are
left alone.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from app.keys import pipeline_key
from app.pipeline.types import Handler

NO_STORE: Final = "no-store"


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        pipeline_key in request
        and not response.prepared  # a streamed answer's headers are already sent
        and _is_json(response.content_type)
    ):
        headers = response.headers
        if "Cache-Control" not in headers:
            headers["Cache-Control"] = NO_STORE
        # Nor read as anything but JSON by a browser that sniffs: a full_name is its user's text.
        headers["X-Content-Type-Options"] = "nosniff"
    return response
