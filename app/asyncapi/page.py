"""The events' docs on the wire: the AsyncAPI document and the page that renders it offline.

The page is the vendored standalone bundle of the AsyncAPI React component (see
app/static/asyncapi/README.md), served from the package like Swagger UI's assets: nothing
comes from another host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import attrs
import orjson
from aiohttp import web

from app.errors import NotFound
from app.expect import expect_handler
from app.swagger_page import DOCS_SECURITY_HEADERS, add_slash_redirect

ASYNCAPI_PATH: Final = "/api/docs/asyncapi.json"
EVENTS_PAGE_PATH: Final = "/api/docs/events"
ASSETS_PATH: Final = "/api/docs/events/assets"
STATIC_DIR: Final = Path(__file__).parent.parent / "static" / "asyncapi"
# Only what the page loads is served (not the README or the licence texts beside it), with
# types fixed here rather than guessed from the host's MIME table, which varies.
ASSETS: Final = {
    "index.js": "text/javascript; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "default.min.css": "text/css; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}


@attrs.define
class ServedAsyncApi:
    """The AsyncAPI document as served, encoded once; a reload replaces `body` in one step."""

    body: bytes


served_asyncapi_key = web.AppKey("served_asyncapi", ServedAsyncApi)


def setup_asyncapi(app: web.Application, document: dict[str, Any]) -> None:
    """Serve `document` at /api/docs/asyncapi.json and its rendered page at /api/docs/events."""
    served = app[served_asyncapi_key] = ServedAsyncApi(orjson.dumps(document))

    async def asyncapi_json(request: web.Request) -> web.Response:
        return web.Response(body=served.body, content_type="application/json")

    app.router.add_get(ASYNCAPI_PATH, asyncapi_json, name="asyncapi", expect_handler=expect_handler)
    app.router.add_get(EVENTS_PAGE_PATH, events_page, name="events_docs", expect_handler=expect_handler)
    add_slash_redirect(app, EVENTS_PAGE_PATH)
    app.router.add_get(f"{ASSETS_PATH}/{{name}}", events_asset, name="events_docs_asset",
                       expect_handler=expect_handler)


def replace_asyncapi(app: web.Application, document: dict[str, Any]) -> None:
    """Serve `document` from now on (a reload of the pipelines file)."""
    app[served_asyncapi_key].body = orjson.dumps(document)


# Swagger UI's page's policy, but for `eval`: the renderer validates the document with ajv, which
# compiles its checks into functions. Still nothing but this origin's files and calls.
EVENTS_SECURITY_HEADERS: Final = {
    **DOCS_SECURITY_HEADERS,
    "Content-Security-Policy": DOCS_SECURITY_HEADERS["Content-Security-Policy"].replace(
        "script-src 'self'", "script-src 'self' 'unsafe-eval'"),
}


async def events_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "page.html",
                            headers={"Content-Type": "text/html; charset=utf-8", **EVENTS_SECURITY_HEADERS})


async def events_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        msg = "No such asset of the events page"
        raise NotFound(msg)
    return web.FileResponse(STATIC_DIR / name,
                            headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"})
