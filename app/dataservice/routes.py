"""HTTP handlers of the reference data service (contract §7), and its one middleware.

Input is checked by hand rather than structured with cattrs: cattrs would turn `1` into
`"1"` for a `str` field and `"false"` into `True` for a `bool`, and a store must not guess.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, cast

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from app.dataservice.store import EmailTaken, NewUser, UserChanges, UserRecord, UserStore, utc_text
from app.errors import (
    PROBLEM_CONTENT_TYPE,
    Conflict,
    FieldError,
    InternalError,
    MalformedRequest,
    NotFound,
    ProblemError,
    ValidationFailed,
    problem_for_status,
)
from app.pipeline.content_coding import decode_content

log = logging.getLogger("turnstile.dataservice")

store_key: Final = web.AppKey("dataservice_store", UserStore)

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
_MAX_ROWID: Final = 2**63 - 1
_MAX_ROWID_DIGITS: Final = len(str(_MAX_ROWID))
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_ID = re.compile(r"-?[0-9]+")


# --- field checks: each returns what is wrong with a value, or None ----------------------------
def _text(max_len: int, *, nullable: bool = False, empty: bool = False) -> Callable[[object], str | None]:
    min_len = 0 if empty else 1

    def check(value: object) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not min_len <= len(value) <= max_len:
            kind = ("null or a" if nullable else "a") + ("" if empty else " non-empty")
            return f"must be {kind} string of at most {max_len} characters"
        return None

    return check


def _roles(value: object) -> str | None:
    if not isinstance(value, list) or len(value) > 64:
        return "must be a list of at most 64 strings"
    if not all(isinstance(r, str) and 0 < len(r) <= 64 for r in value):
        return "must hold non-empty strings of at most 64 characters"
    return None


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _moment(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return None
    return "must be an RFC 3339 date-time with a time zone"


_FIELDS: Final[dict[str, Callable[[object], str | None]]] = {
    "email": _text(320),
    "password_hash": _text(1024),
    "full_name": _text(1000, nullable=True, empty=True),
    "roles": _roles,
    "is_active": _boolean,
    "is_verified": _boolean,
}
# What only a PATCH may set: the durable record of a user-level revocation.
_PATCH_ONLY: Final[dict[str, Callable[[object], str | None]]] = {"sessions_revoked_at": _moment}
_REQUIRED: Final = ("email", "password_hash")


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        raw = await request.read()
    except web.RequestPayloadError:  # chunked framing that does not decode
        msg = "the body cannot be read as its framing says"
        raise MalformedRequest(msg) from None
    # Inflated here, within the body limit: aiohttp's own decoding is off (see main.py).
    raw = decode_content(raw, request.headers.get(hdrs.CONTENT_ENCODING, ""), request.client_max_size)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        msg = "the body is not valid JSON"
        raise MalformedRequest(msg) from None
    if not isinstance(body, dict):
        msg = "the body must be a JSON object"
        raise MalformedRequest(msg)
    return body


def _checked_fields(
    body: dict[str, Any], *, required: tuple[str, ...], fields: dict[str, Callable[[object], str | None]] = _FIELDS
) -> dict[str, Any]:
    """`body` if every field is known and well-typed and the `required` ones are there, else a 422."""
    errors = [FieldError(("body", name), "field required") for name in required if name not in body]
    for name, value in body.items():
        check = fields.get(name)
        problem = "unknown field" if check is None else check(value)
        if problem is not None:
            errors.append(FieldError(("body", name), problem))
    if errors:
        msg = "the request body is invalid"
        raise ValidationFailed(msg, errors=errors)
    return body


def _user_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not _ID.fullmatch(raw):
        msg = "the user id must be an integer"
        raise ValidationFailed(msg, errors=[FieldError(("path", "id"), "must be an integer")])
    # Any integer outside the rowid range names no user. Its length is checked first: int()
    # refuses strings of more than 4300 digits, and a path can be longer than that.
    if len(raw) > _MAX_ROWID_DIGITS or not 0 < int(raw) <= _MAX_ROWID:
        msg = "no user with this id"
        raise NotFound(msg)
    return int(raw)


def _query_int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not 0 <= int(raw) <= maximum:
        msg = f"the query parameter {name!r} is invalid"
        error = FieldError(("query", name), f"must be an integer from 0 to {maximum}")
        raise ValidationFailed(msg, errors=[error])
    return int(raw)


def _no_such_user(user_id: int) -> NotFound:
    return NotFound(f"no user with id {user_id}")


def _email_taken() -> Conflict:
    return Conflict("another user already has this email")


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _record_response(record: UserRecord, status: int = 200) -> web.Response:
    return _json(record.as_dict(), status)


# --- handlers -----------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def create_user(request: web.Request) -> web.Response:
    fields = _checked_fields(await _json_object(request), required=_REQUIRED)
    try:
        record = await request.app[store_key].create(NewUser(**fields))
    except EmailTaken:
        raise _email_taken() from None
    response = _record_response(record, 201)
    response.headers["Location"] = f"/api/v1/users/{record.id}"
    return response


async def get_user(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    record = await request.app[store_key].get(user_id)
    if record is None:
        raise _no_such_user(user_id)
    return _record_response(record)


async def list_users(request: web.Request) -> web.Response:
    limit = _query_int(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _query_int(request, "offset", 0, _MAX_ROWID)
    email = request.query.get("email")  # present but empty still filters: it matches nobody
    records, total = await request.app[store_key].find(email=email, limit=limit, offset=offset)
    return _json({"items": [r.as_dict() for r in records], "total": total, "limit": limit, "offset": offset})


async def patch_user(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    fields = _checked_fields(await _json_object(request), required=(), fields={**_FIELDS, **_PATCH_ONLY})
    if "sessions_revoked_at" in fields:
        # One format for every stored time, so the store keeps the later one by comparing text.
        fields["sessions_revoked_at"] = utc_text(datetime.fromisoformat(fields["sessions_revoked_at"]))
    changes = cast("UserChanges", fields)
    try:
        record = await request.app[store_key].update(user_id, changes)
    except EmailTaken:
        raise _email_taken() from None
    if record is None:
        raise _no_such_user(user_id)
    return _record_response(record)


async def delete_user(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    if not await request.app[store_key].delete(user_id):
        raise _no_such_user(user_id)
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    for collection in ("/api/v1/users", "/api/v1/users/"):
        app.router.add_post(collection, create_user)
        app.router.add_get(collection, list_users)
    app.router.add_get("/api/v1/users/{id}", get_user)
    app.router.add_patch("/api/v1/users/{id}", patch_user)
    app.router.add_delete("/api/v1/users/{id}", delete_user)


# --- the one middleware: request id, problem+json, one log line per request ---------------------
def _problem(error: ProblemError, request_id: str) -> web.Response:
    response = web.Response(body=orjson.dumps(error.body(request_id)), status=error.status)
    response.content_type = PROBLEM_CONTENT_TYPE
    response.headers.update(error.headers)
    return response


def _http_problem(exc: web.HTTPException, request_id: str) -> web.Response:
    response = _problem(problem_for_status(exc.status), request_id)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take or make the request id, turn every error into problem+json, log the outcome."""
    sent = request.headers.get("X-Request-ID", "")
    request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await handler(request)
    except ProblemError as exc:
        response = _problem(exc, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_problem(exc, request_id)
    except Exception:
        log.exception("unhandled error in %s %s request_id=%s", request.method, request.path, request_id)
        response = _problem(InternalError(), request_id)
    response.headers["X-Request-ID"] = request_id
    log.info(
        "%s %s -> %d in %.1f ms request_id=%s",
        request.method, request.path, response.status, (time.perf_counter() - started) * 1000, request_id,
        extra={"request_id": request_id},
    )
    return response
