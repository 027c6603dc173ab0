"""The `Expect` request header (RFC 9110 §10.1.1) on the service's own routes.

`100-continue` is answered at once, as aiohttp does, unless the body it invites is declared
larger than any route takes: that request is answered 413 without it (RFC 9110 §10.1.1 lets a
server answer a final status instead), as is one that declares such a body without asking. Any
other expectation cannot be met, and aiohttp answers it with a bare text 417 before any
middleware runs: no problem+json, no request id, no log line, no metric. Here it is only noted
on the request, and the error middleware answers the 417 (`refuse_unmet_expectation`), as every
other error is answered.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from app.errors import PayloadTooLarge

unmet_expectation_key: Final = web.RequestKey("unmet_expectation", str)


async def expect_handler(request: web.Request) -> None:
    """The routes' `expect_handler`: 100 Continue, or the expectation noted for the 417."""
    if request.version != HttpVersion11:
        return  # an HTTP/1.0 client knows no interim answer
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() == "100-continue":
        if _declared_too_large(request):
            return  # no invitation: the error middleware answers the 413
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size starts after the interim one
        return
    request[unmet_expectation_key] = expect


def refuse_unmet_expectation(request: web.Request) -> None:
    """Raise what the request's head alone decides; the error middleware's first step: the 417
    for an expectation `expect_handler` noted, the 413 for a body declared too large (read up to
    the limit first, it took a megabyte of a client's upload, or 30 s of a slow one)."""
    if unmet_expectation_key in request:
        raise web.HTTPExpectationFailed
    if _declared_too_large(request):
        limit = request.client_max_size
        too_large = PayloadTooLarge(f"The request body is larger than allowed ({limit // 1024**2} MiB).")
        too_large.closes_connection = True  # the body is not read: the connection cannot go on
        raise too_large


def _declared_too_large(request: web.Request) -> bool:
    length = request.content_length
    return length is not None and length > request.client_max_size
