"""The Swagger UI page at /api/docs and its files, offline and on this service's document only.

The bundle is aiohttp-apispec's (Swagger UI 4.1.0); the page and its start-up script are ours
(app/static/swagger): the script drops the address's query before Swagger UI reads it (that
version takes `?url=` from it, CVE-2021-46708), and the page's Content-Security-Policy keeps it
to this origin, so a crafted link can neither show another document here nor send a password
typed into *Authorize* anywhere else. Paths are relative, so the page works under a prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import aiohttp_apispec
from aiohttp import web

from app.errors import NotFound
from app.expect import expect_handler

OURS: Final = Path(__file__).parent / "static" / "swagger"
BUNDLED: Final = Path(aiohttp_apispec.__file__).parent / "static"
# Only what the page loads, with types fixed here (the host's MIME table varies).
FILES: Final = {
    "swagger-ui-bundle.js": (BUNDLED, "text/javascript; charset=utf-8"),
    "swagger-ui.css": (BUNDLED, "text/css; charset=utf-8"),
    "favicon-32x32.png": (BUNDLED, "image/png"),
    "favicon-16x16.png": (BUNDLED, "image/png"),
    "init.js": (OURS, "text/javascript; charset=utf-8"),
    "page.css": (OURS, "text/css; charset=utf-8"),
}
# Swagger UI styles elements itself (style attributes) and shows data: images; everything else
# comes from this origin, its calls ("Try it out", "Authorize") included.
DOCS_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_slash_redirect(app: web.Application, page_path: str) -> None:
    """`page_path` + "/" (as typed, or as a proxy adds it) sends the browser to the page.

    Relatively (``../docs``), so that it also lands right under a prefix an ingress strips; and
    permanently, as the slash never names anything else here.
    """
    target = f"../{page_path.rstrip('/').rpartition('/')[2]}"

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(target)

    app.router.add_get(f"{page_path}/", redirect, name=None, expect_handler=expect_handler)


def setup_swagger_page(app: web.Application, page_path: str) -> None:
    """Serve the page at `page_path` and its files under `page_path`/static/."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(OURS / "index.html",
                                headers={"Content-Type": "text/html; charset=utf-8", **DOCS_SECURITY_HEADERS})

    async def asset(request: web.Request) -> web.FileResponse:
        found = FILES.get(request.match_info["name"])
        if found is None:
            msg = "No such file."
            raise NotFound(msg)
        directory, content_type = found
        return web.FileResponse(directory / request.match_info["name"],
                                headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"})

    app.router.add_get(page_path, page, name="docs", expect_handler=expect_handler)
    add_slash_redirect(app, page_path)
    app.router.add_get(f"{page_path}/static/{{name}}", asset, name="docs_static", expect_handler=expect_handler)
