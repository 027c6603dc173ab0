"""The `Expect` request header (RFC 9110 §10.1.1) on the service's own routes.

`100-continue` is answered at once, as aiohttp does. Any other expectation cannot be met, and
aiohttp answers it with a bare text 417 before any middleware runs: no problem+json, no
request id, no log line, no metric. Here it is only noted on the request, and the error
middleware answers the 417 (`refuse_unmet_expectation`), as every other error is answered.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

unmet_expectation_key: Final = web.RequestKey("unmet_expectation", str)


async def expect_handler(request: web.Request) -> None:
    """The routes' `expect_handler`: 100 Continue, or the expectation noted for the 417."""
    if request.version != HttpVersion11:
        return  # an HTTP/1.0 client knows no interim answer
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size starts after the interim one
        return
    request[unmet_expectation_key] = expect


def refuse_unmet_expectation(request: web.Request) -> None:
    """Raise the 417 for an expectation `expect_handler` noted; the error middleware's first step."""
    if unmet_expectation_key in request:
        raise web.HTTPExpectationFailed
