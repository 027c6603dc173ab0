"""No response names the server's software versions (contract §4).

aiohttp puts `Server: Python/3.11 aiohttp/3.x` on every response that has no `Server` header,
which tells a scanner exactly which advisories to try. Most responses could be fixed in the
app (an `on_response_prepare` signal), but aiohttp answers some requests itself before any app
sees them (a 400 for a malformed request line or header) and those only take the module's
default. So the default is replaced, once per process, for every server aiohttp runs here: the
service, the reference data service and the test servers alike. A test sends a malformed
request and reads the header, so an aiohttp release that moves the default cannot undo this
silently.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web_response

SERVER_NAME: Final = "turnstile"


def hide_server_version() -> None:
    """Make `Server: turnstile` the default header of every aiohttp response in this process."""
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]  # not re-exported
