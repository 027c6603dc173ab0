"""The `data-fetch` step's settings."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from attrs.validators import and_, ge, le, optional

from app import check_template, template_field

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _check_call(inst: object, attribute: Any, value: str) -> None:
    method, _, path = value.partition(" ")
    if method not in METHODS or not path.startswith("/") or " " in path:
        msg = f"call must be 'METHOD /path' with METHOD one of {', '.join(METHODS)}, got {value!r}"
        raise ValueError(msg)
    check_template(inst, attribute, path)  # the path part only: the method is no template


@frozen(kw_only=True)
class DataFetchConfig:
    """`{ use = "data-fetch", call = "GET /api/v1/users/{id}", status = 200, response = "User" }`

    call: the upstream call, ``METHOD /path``; the path is a template over the route
        parameters and ``{actor}`` (the authenticated user's id). The validated request body,
        if any, is sent as JSON (after `transform_upstream`), the validated query parameters
        as the query string.
    status: the status to answer with on success (2xx); 204 answers with an empty body.
    response: name of the response model. The upstream's answer is checked against it
        (a missing field, a wrong type, a list where an object belongs: 502) and only the
        model's fields are passed on, to `transform_response` hooks, the client, the cache
        and events; fields it does not declare are dropped. Without it the answer is passed
        on as it came. Also the success schema in the OpenAPI document.
    upstream: the service called: ``data_service`` (the default, set by DATA_SERVICE_URL) or
        the NAME of an ``[upstreams.NAME]`` table of the same file.
    location: the ``Location`` header of the answer (RFC 9110: where a created resource is),
        a template over the fields of the answer, e.g. ``"/api/v1/users/{id}"``; needs
        `response`, whose model must have every field it names.
    conflict: the ``detail`` of the 409 a write meets (the upstream's own words never reach a
        client: they may name a table or a constraint), e.g. ``"Another user already has this
        email."``; unset, a generic one.
    """

    call: str = template_field(validator=_check_call)
    status: int = field(default=200, validator=and_(ge(200), le(299)))
    response: str | None = None
    upstream: str = "data_service"
    location: str | None = field(default=None, validator=optional(check_template))
    conflict: str | None = None

    @property
    def method(self) -> str:
        return self.call.partition(" ")[0]

    @property
    def path(self) -> str:
        return self.call.partition(" ")[2]
