"""The ProblemError hierarchy: every error a client can see, as RFC 9457 problem details.

Steps, hooks and clients raise these; the error middleware (`app/middlewares/errors.py`)
is the only place that renders them and the only place that catches a bare ``Exception``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from itertools import islice
from typing import Any, Final

import attrs

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://turnstile.dev/problems/"
# Contract §4: a 422 lists at most this many errors, so a hostile body cannot make a huge answer.
MAX_VALIDATION_ERRORS: Final = 50


@attrs.frozen
class FieldError:
    """One bad field of a request: where it is (`loc`) and what is wrong with it (`msg`)."""

    loc: tuple[str | int, ...]
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg}


class ProblemError(Exception):
    """An error that becomes an `application/problem+json` response.

    Subclasses fix `status`, `title` and the `type` slug; `detail` says what happened in
    this case. `headers` go on the response (e.g. `Retry-After`).
    """

    status: int = 500
    title: str = "Internal Server Error"
    slug: str = "internal"
    # The connection cannot carry another request after this answer (a body left half-read).
    closes_connection: bool = False
    # Set by the data-service client when the request reached the upstream and its answer was
    # lost or unusable (a timeout, a 5xx, a dropped connection): a write may have been applied.
    outcome_unknown: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] = (),
    ) -> None:
        self.detail = detail if detail is not None else self.title
        self.headers = dict(headers or {})
        self.errors = tuple(errors)
        # RFC 9457 extension members beside the standard ones (e.g. OAuth2's `error`, which the
        # token endpoint's clients look for): they never replace a standard member.
        self.extensions: dict[str, Any] = {}
        super().__init__(self.detail)

    def with_headers(self, headers: Mapping[str, str]) -> ProblemError:
        """A copy of this problem with more headers (for answering several requests with it).

        Not `copy.copy`: that re-runs ``__init__`` with `args`, which subclasses do not accept.
        """
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone.args = self.args
        clone.headers = {**self.headers, **headers}
        return clone

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def body(self, request_id: str) -> dict[str, Any]:
        """The RFC 9457 document for this error, as sent to the client."""
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "request_id": request_id,
        }
        if self.errors:
            doc["errors"] = [e.as_dict() for e in self.errors]
        for name, value in self.extensions.items():
            doc.setdefault(name, value)
        return doc


class MalformedRequest(ProblemError):
    """400: the request cannot be read as meant (a body that does not parse, a header sent twice)."""

    status, title, slug = 400, "Bad Request", "malformed-request"


class Unauthorized(ProblemError):
    """401: no valid credentials. Add ``WWW-Authenticate`` (the auth plugin does)."""

    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None, *, error: str = "invalid_token") -> None:
        # RFC 6750 §3: a bearer challenge on every 401.
        super().__init__(detail, headers={"WWW-Authenticate": f'Bearer error="{error}"'})


class Forbidden(ProblemError):
    """403: the caller is known but may not do this."""

    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    """404: no such resource (also what an id that names nothing answers)."""

    status, title, slug = 404, "Not Found", "not-found"


class UserNotFound(NotFound):
    """404 for one user's record, which `user_id` names: the data service has no such user.

    Raised where a step read or wrote one user's record (`data-fetch` on the data service's
    `/api/v1/users/{id}`); the auth step answers it 401 to the one caller whose own record it is
    (a deleted user's tokens stop working, contract §4), and 404 to anyone else. Decided per
    request: one fetch's answer may be shared by several callers (the cache's flight).
    """

    def __init__(self, user_id: int, detail: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers)
        self.user_id = user_id


class MethodNotAllowed(ProblemError):
    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"


class Conflict(ProblemError):
    """409: the change conflicts with the stored state (e.g. an email already taken)."""

    status, title, slug = 409, "Conflict", "conflict"


class RequestTimeout(ProblemError):
    """408: the request's body did not arrive in time; the connection is closed after it."""

    status, title, slug = 408, "Request Timeout", "request-timeout"
    closes_connection = True


class PayloadTooLarge(ProblemError):
    status, title, slug = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(ProblemError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class ValidationFailed(ProblemError):
    """A 422 naming each bad field: at most `MAX_VALIDATION_ERRORS` of them. Given more, it
    lists that many and its `detail` says that the rest were left out."""

    status, title, slug = 422, "Unprocessable Content", "validation-failed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Iterable[FieldError] = (),
    ) -> None:
        listed = tuple(islice(errors, MAX_VALIDATION_ERRORS + 1))
        if len(listed) > MAX_VALIDATION_ERRORS:
            listed = listed[:MAX_VALIDATION_ERRORS]
            detail = f"{detail or self.title} Only the first {MAX_VALIDATION_ERRORS} errors found are listed."
        super().__init__(detail, headers=headers, errors=listed)


class TooManyRequests(ProblemError):
    """429: a limit was reached; `retry_after_s` becomes ``Retry-After``."""

    status, title, slug = 429, "Too Many Requests", "too-many-requests"

    def __init__(self, detail: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_s))})


class InternalError(ProblemError):
    """A fault inside the service; its detail never carries internals."""


class BadGateway(ProblemError):
    """502: an upstream answered something the service cannot use."""

    status, title, slug = 502, "Bad Gateway", "bad-gateway"


class ServiceUnavailable(ProblemError):
    """503: a dependency is unreachable or its circuit is open; ``Retry-After`` when known."""

    status, title, slug = 503, "Service Unavailable", "service-unavailable"

    def __init__(self, detail: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_s))})


class GatewayTimeout(ProblemError):
    """504: an upstream did not answer in time."""

    status, title, slug = 504, "Gateway Timeout", "gateway-timeout"


class HTTPProblem(ProblemError):
    """Any other HTTP status (an aiohttp `HTTPException` a plugin raised, say): its reason phrase names it."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        self.status = status
        self.title = HTTPStatus(status).phrase
        self.slug = self.title.lower().replace(" ", "-")
        super().__init__(detail)


_BY_STATUS: dict[int, type[ProblemError]] = {
    cls.status: cls
    for cls in (
        MalformedRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
        PayloadTooLarge, UnsupportedMediaType, ValidationFailed, BadGateway, GatewayTimeout,
    )
}


def problem_for_status(status: int, detail: str | None = None) -> ProblemError:
    """The ProblemError for a status raised outside the pipeline (aiohttp's 404/405/413, upstream 404/409)."""
    cls = _BY_STATUS.get(status)
    return cls(detail) if cls is not None else HTTPProblem(status, detail)
