"""JSON answers as every route of this service sends them.

One serializer (orjson: what the pipeline's data-fetch step and the error middleware use) and one
media type (`application/json`, no charset: JSON is UTF-8 by definition, RFC 8259 §8.1), so a
client sees the same bytes for the same body whichever step or plugin answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

JSON: Final = "application/json"


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A response carrying `body` as JSON: dicts, lists, strings, numbers, booleans, None, and
    datetimes (as RFC 3339). `headers` must not set Content-Type."""
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, headers=headers)
