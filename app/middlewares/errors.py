"""The one error middleware: every error becomes RFC 9457 problem+json.

It is the only place that catches a bare Exception: that becomes a logged 500 whose body
says nothing about the inside.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
from aiohttp import web

from app.errors import PROBLEM_CONTENT_TYPE, InternalError, NotFound, ProblemError, problem_for_status
from app.expect import refuse_unmet_expectation
from app.keys import request_id_key
from app.pipeline.types import Handler

log = logging.getLogger("turnstile.errors")

# Details for statuses the router and parser raise, so aiohttp's texts never reach clients.
_DETAILS = {
    404: "No route matches this path.",
    405: "This route does not accept that method.",
    413: "The request body is larger than allowed (1 MiB).",
    417: "This service meets no expectation but 100-continue.",
}


def problem_response(request: web.Request, problem: ProblemError) -> web.Response:
    return render_problem(problem, request.get(request_id_key, "-"))


def render_problem(problem: ProblemError, request_id: str) -> web.Response:
    """The problem+json answer for `problem`; the connection is closed after it if it says so."""
    response = web.Response(status=problem.status, body=orjson.dumps(problem.body(request_id)),
                            headers=problem.headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    if problem.closes_connection:
        response.force_close()
    return response


def _names_no_file(request: web.Request) -> bool:
    """Whether a static route's answer names a file that is not there. aiohttp finds that out
    only while sending it, and then answers a bare 404 past every middleware."""
    resource = request.match_info.route.resource
    if not isinstance(resource, web.StaticResource):
        return False
    directory = Path(resource.get_info()["directory"])
    path = (directory / request.match_info.get("filename", "")).resolve()
    return not (path.is_file() and path.is_relative_to(directory.resolve()))


# nginx's "client closed request": what the access line and the request metrics record for a
# client that went away before its answer. Re-raised, the disconnect reached aiohttp as a server
# error: a 500 in the metrics and an ERROR traceback per request, which any client could send.
CLIENT_CLOSED_REQUEST = 499


def _client_gone(request: web.Request) -> web.Response:
    """An answer nobody will read (aiohttp drops it on the closed connection)."""
    response = web.Response(status=CLIENT_CLOSED_REQUEST, reason="Client Closed Request")
    response.force_close()
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        refuse_unmet_expectation(request)
        response = await handler(request)
        if isinstance(response, web.FileResponse) and _names_no_file(request):
            raise NotFound("No such file.")  # answered as every error is, just below
        return response
    except ProblemError as problem:
        return problem_response(request, problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        mapped = problem_for_status(exc.status, _DETAILS.get(exc.status, exc.reason))
        if "Allow" in exc.headers:
            mapped.headers["Allow"] = exc.headers["Allow"]
        return problem_response(request, mapped)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        if request.transport is None or request.transport.is_closing():
            # The client went away (mid-body, say): nobody to answer, nothing broken here.
            log.info("client disconnected during %s %s", request.method, request.path)
            return _client_gone(request)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(request, InternalError("An internal error occurred."))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(request, InternalError("An internal error occurred."))
