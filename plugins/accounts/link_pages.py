"""The pages the links in mails open when the service itself is where they point.

A verification or reset link is `PUBLIC_URL` + `/verify-email#token=…` or `/reset-password#token=…`:
a deployment's front end has those pages. Without one (`PUBLIC_URL` unset, as in development,
or set to the service's own address), these serve them: static HTML and one script, which read
the token from the fragment (no request carries it), drop it from the address bar, and call
the API's default routes (`POST /api/v1/auth/verify`, `POST /api/v1/auth/reset-password`) when
the person acts: a click verifies, never the opening (mail scanners open links and run them).

Nothing but this service's own script runs on them (Content-Security-Policy), they cannot be
framed, and no Referer leaves them.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from aiohttp import web

from app import PluginRoute

_PAGES = files("plugins.accounts") / "pages"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidated: a new release's page is the next one seen
}


def _static(name: str, content_type: str) -> web.Response:
    return web.Response(body=(_PAGES / name).read_bytes(), content_type=content_type, charset="utf-8",
                        headers=SECURITY_HEADERS)


async def verify_email_page(request: web.Request) -> web.Response:
    return _static("verify-email.html", "text/html")


async def reset_password_page(request: web.Request) -> web.Response:
    return _static("reset-password.html", "text/html")


async def pages_script(request: web.Request) -> web.Response:
    return _static("account-pages.js", "text/javascript")


def _html(description: str) -> dict[str, object]:
    return {"200": {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}}


ROUTES: Final = (
    PluginRoute(path="/verify-email", handler=verify_email_page, name="verify_email_page",
                summary="The page a verification mail's link opens (reads the token from the fragment)",
                responses=_html("The page; its script posts the token to /api/v1/auth/verify")),
    PluginRoute(path="/reset-password", handler=reset_password_page, name="reset_password_page",
                summary="The page a password-reset mail's link opens (reads the token from the fragment)",
                responses=_html("The page; its form posts the token and the new password to "
                                "/api/v1/auth/reset-password")),
    PluginRoute(path="/account-pages.js", handler=pages_script, name="account_pages_script",
                summary="The script of the mail links' pages",
                responses={"200": {"description": "JavaScript",
                                   "content": {"text/javascript": {"schema": {"type": "string"}}}}}),
)
