"""Requests aiohttp refuses before any app sees them are answered problem+json too (contract §5).

aiohttp's HTTP parser refuses a request line or header over 8190 bytes, a request line that is
not HTTP, a bad Content-Length and the like itself: no middleware runs (aiohttp issue #3287).
It answered them with a text/plain 400 quoting the start of the offending input, and logged
each at ERROR with a traceback, one per request a hostile client chose to send. The protocol's
`handle_error` is replaced once per process (as the Server header is, app/server_header.py), for
the service, the reference data service and the test servers alike, by one that answers an RFC
9457 problem with a fresh request id and logs one INFO line for a client's malformed request
(ERROR with its traceback only for a 500) naming the kind of refusal, never quoting the input.
Tests send such requests over a raw socket, so an
aiohttp release that changes this method cannot undo it silently.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest

from app.errors import InternalError, ProblemError, problem_for_status
from app.middlewares.errors import render_problem
from app.middlewares.request_id import REQUEST_ID_HEADER, accept_or_generate

log = logging.getLogger("turnstile.errors")

MALFORMED: Final = (
    "The request is not valid HTTP, or its request line or a header is longer than this server accepts."
)


def _answer_problem(
    self: web_protocol.RequestHandler, request: BaseRequest, status: int = 500,
    exc: BaseException | None = None, message: str | None = None,
) -> web.StreamResponse:
    """What `RequestHandler.handle_error` answers: a problem, and the connection closed after it."""
    request_id = accept_or_generate(None)
    problem: ProblemError
    # The id the answer carries, in the line's own field too (no request context sets it here).
    extra = {"request_id": request_id}
    if status >= 500:
        log.error("could not handle a request from %s [%s]", request.remote, request_id, exc_info=exc, extra=extra)
        problem = InternalError("An internal error occurred.")
    else:
        # The kind of refusal only: aiohttp's words quote the input, which may hold a password
        # (a login body with broken chunk framing) or a bearer token (a header with a stray byte).
        reason = type(exc).__name__ if exc is not None else "refused"
        log.info("refused a malformed HTTP request from %s with %d [%s]: %s", request.remote, status, request_id,
                 reason, extra=extra)
        problem = problem_for_status(status, MALFORMED)
    if request.writer.output_size > 0:  # as aiohttp: a response already began, the connection is broken
        msg = "Response is sent already, cannot send another response with the error message"
        raise ConnectionError(msg)
    response = render_problem(problem, request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    response.force_close()  # whatever the problem: the parser's state is not to be trusted
    return response


def answer_protocol_errors_as_problems() -> None:
    """Make every aiohttp server of this process answer its own refusals as problems."""
    web_protocol.RequestHandler.handle_error = _answer_problem  # type: ignore[method-assign]
