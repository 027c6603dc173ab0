"""Reading a request's JSON body and query string into validated JSON, once, at start-up-built readers.

400 malformed JSON (or a body that does not decode: a broken Content-Encoding or chunked
framing is the client's fault, never a 500), 408 a body that does not arrive within
TURNSTILE_BODY_TIMEOUT_S, 413 over the size limit (aiohttp's client_max_size), over a form's
field limit (its client_max_fields) or over a JSON body's objects and arrays (app.pipeline.json_checks),
415 wrong content type, 422 with one entry per bad field (at most `app.errors.MAX_VALIDATION_ERRORS`).

Sizes come first: `BodyReader.read` checks every array, map and string against its declared
maximum as soon as the body is parsed, before `transform_request` hooks or any other rule see
it (see `app.models.validation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import orjson
from aiohttp import hdrs, web

from app.errors import (
    FieldError,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.keys import settings_key
from app.models.schema import schema_of
from app.models.validation import SchemaValidator
from app.pipeline.content_coding import UNREADABLE_BODY, decode_content
from app.pipeline.json_checks import MAX_JSON_CONTAINERS, check_shape, refuse_too_many_containers
from app.settings import BODY_TIMEOUT_S

# The form a model with `form_fields` takes: RFC 6749 §4.3.2's, which the OpenAPI document
# names. A multipart body is a 415 like any other type the route does not take.
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded",)


# How aiohttp's 413 for a form over `client_max_fields` begins (aiohttp.web_request._too_many_fields).
_TOO_MANY_FIELDS = "Maximum number of form fields"

BODY_TOO_SLOW = "The request body did not arrive in time."


async def read_body(request: web.Request) -> bytes:
    """The request's body bytes, decoded as its Content-Encoding says and held to the body
    limit once decoded (app.pipeline.content_coding); a 400 when they do not decode (aiohttp
    raises while reading, and would otherwise surface as a 500), a 408 when they do not arrive
    in time."""
    try:
        async with _body_deadline(request):
            raw = await request.read()
    except web.RequestPayloadError:
        raise MalformedRequest(UNREADABLE_BODY) from None
    return decode_content(raw, content_coding(request), request.client_max_size)


def content_coding(request: web.Request) -> str:
    """The request's Content-Encoding, every header line of it: two `gzip` lines are the list
    `gzip, gzip` (RFC 9110 §5.3), a coding applied twice, and refused as one line saying so is."""
    return ", ".join(request.headers.getall(hdrs.CONTENT_ENCODING, ()))


@contextlib.asynccontextmanager
async def _body_deadline(request: web.Request) -> AsyncIterator[None]:
    """A 408 unless the block ends within TURNSTILE_BODY_TIMEOUT_S: aiohttp itself waits for a
    trickled body for as long as the client keeps the connection open, holding the request (and
    its limiter slot) open."""
    settings = request.app.get(settings_key)  # an app made without settings (a unit test's) gets the default
    try:
        async with asyncio.timeout(settings.body_timeout_s if settings is not None else BODY_TIMEOUT_S):
            yield
    except TimeoutError:
        raise RequestTimeout(BODY_TOO_SLOW) from None


class BodyReader:
    """Reads the body a pipeline's model describes.

    A model class may also accept HTML/OAuth2 forms by declaring ``form_model:
    ClassVar[type]`` (an attrs model the form is validated against first, with its own
    field names in the errors) and ``form_fields: ClassVar[dict[str, str]]`` (form field →
    body field, e.g. ``{"username": "email", "password": "password"}``): only those fields
    of a valid form become the body, which is then validated like a JSON one. A form model
    that `ignores_unknown_fields` drops the fields it does not know before it is validated.
    """

    def __init__(self, model: type[Any]) -> None:
        self.model = model
        self.validator = SchemaValidator(schema_of(model))
        self.form_fields: Mapping[str, str] | None = getattr(model, "form_fields", None)
        self.max_json_containers: int = getattr(model, "max_json_containers", MAX_JSON_CONTAINERS)
        form_model = getattr(model, "form_model", None)
        self.form_validator: SchemaValidator | None = None
        # With a form model that ignores unknown fields (RFC 6749 §3.2), what a form keeps: its
        # own fields, and those named as the body's (`email` beside `username`), which are
        # refused: which of the two counts would be up to each reader (a limiter, the login).
        self.form_keeps: frozenset[str] | None = None
        if form_model is not None:
            form_schema = schema_of(form_model)
            self.form_validator = SchemaValidator({**form_schema, "additionalProperties": False})
            if form_schema["additionalProperties"] is True and self.form_fields is not None:
                self.form_keeps = frozenset(form_schema["properties"]) | frozenset(self.form_fields.values())

    async def read(self, request: web.Request) -> Any:
        """The JSON value of the body, its sizes within the model's maxima (not yet validated
        otherwise). Raises ValidationFailed naming each oversized field, or each member
        repeated in one object."""
        value, raw_json, containers = await self._parse(request)
        errors = self.validator.size_errors(value)
        if errors:
            msg = "The request body is not valid."
            raise ValidationFailed(msg, errors=errors)
        # After the sizes: an oversized body is refused without this walk.
        if raw_json is not None and isinstance(value, dict | list):
            check_shape(raw_json, value, containers)
        return value

    async def _parse(self, request: web.Request) -> tuple[Any, bytes | None, int]:
        """The body's value; when it is JSON, its bytes and their `{` and `[` characters."""
        content_type = request.content_type
        if content_type == "application/json" or content_type.endswith("+json"):
            raw = await read_body(request)
            containers = refuse_too_many_containers(raw, self.max_json_containers)
            try:
                return orjson.loads(raw), raw, containers
            except orjson.JSONDecodeError:
                msg = "The request body is not valid JSON."
                raise MalformedRequest(msg) from None
        if self.form_fields is not None and content_type in FORM_CONTENT_TYPES:
            if content_coding(request).strip().lower() not in ("", "identity"):
                # aiohttp's form reader would see the coded bytes: aiohttp decodes no request body
                # in this app, read_body does (app/pipeline/content_coding.py).
                msg = "A form body must be sent without a Content-Encoding."
                raise UnsupportedMediaType(msg, headers={"Accept-Encoding": "identity"})
            try:
                async with _body_deadline(request):
                    form = await request.post()
                # aiohttp decodes a %-escape that is not UTF-8 (`%80`) as U+FFFD, so a password
                # with one logged in as another; raw bytes that are not UTF-8 are refused above.
                urllib.parse.parse_qsl((await request.read()).decode("latin-1"), errors="strict")
            except (ValueError, UnicodeDecodeError, web.RequestPayloadError):  # aiohttp's words for a broken form
                msg = "The form body cannot be read."
                raise MalformedRequest(msg) from None
            except web.HTTPRequestEntityTooLarge as too_large:
                # aiohttp's bound on a form's fields is a 413 too; its detail must not speak of bytes.
                if _TOO_MANY_FIELDS in (too_large.text or ""):
                    msg = f"The form has more than {request.client_max_fields} fields."
                    raise PayloadTooLarge(msg) from None
                raise
            return self._from_form(form), None, 0
        accepted = "application/json" + (" or a form" if self.form_fields is not None else "")
        msg = f"The request body must be {accepted}."
        raise UnsupportedMediaType(msg)

    def _from_form(self, form: Mapping[str, Any]) -> dict[str, Any]:
        assert self.form_fields is not None
        # A field sent twice is refused, never resolved by order: a limiter or a rule that
        # read the first value must see the same one the step acts on.
        fields: dict[str, Any] = {}
        for name, value in form.items():
            fields[name] = [fields[name], value] if name in fields else value
        if self.form_keeps is not None:
            fields = {name: value for name, value in fields.items() if name in self.form_keeps}
        if self.form_validator is not None:
            errors = self.form_validator.errors(fields)
            if errors:
                msg = "The form is not valid."
                raise ValidationFailed(msg, errors=[self._form_error(error) for error in errors])
            return {self.form_fields[k]: v for k, v in fields.items() if k in self.form_fields}
        return {self.form_fields.get(k, k): v for k, v in fields.items()}

    def _form_error(self, error: FieldError) -> FieldError:
        """A body's name sent in a form (`email` beside `username`) says which name the form uses."""
        assert self.form_fields is not None  # only forms are read with it
        name = error.loc[-1] if error.loc else None
        form_names = [form for form, body in self.form_fields.items() if body == name and form != name]
        if error.msg == "unknown field" and form_names:
            return FieldError(error.loc, f"a form sends this as {form_names[0]!r}")
        return error

    def validate(self, value: Any, request: web.Request | None = None) -> dict[str, Any]:
        errors = self.validator.errors(value)
        if errors:
            if request is not None and self._read_as_form(request):
                errors = [self._in_form_names(error) for error in errors]
            msg = "The request body is not valid."
            raise ValidationFailed(msg, errors=errors)
        assert isinstance(value, dict)
        return value

    def _read_as_form(self, request: web.Request) -> bool:
        return self.form_fields is not None and request.content_type in FORM_CONTENT_TYPES

    def _in_form_names(self, error: FieldError) -> FieldError:
        """A body field's error named as the form sent it (`username`, not `email`: a blank
        username is found empty once normalised, after the form was read)."""
        assert self.form_fields is not None  # only forms are read with it
        if len(error.loc) < 2:
            return error
        names = [form for form, body in self.form_fields.items() if body == error.loc[1] and form != body]
        return FieldError((error.loc[0], names[0], *error.loc[2:]), error.msg) if names else error


class QueryReader:
    """Reads query parameters as a model describes them (strings converted by schema type)."""

    def __init__(self, model: type[Any]) -> None:
        self.model = model
        self.schema = schema_of(model)
        self.validator = SchemaValidator(self.schema)

    def read(self, request: web.Request) -> dict[str, Any]:
        properties = self.schema["properties"]
        value: dict[str, Any] = {}
        repeated: list[FieldError] = []
        for name, text in request.query.items():
            # As for a form field: a parameter sent twice is refused, never resolved by order,
            # so what was checked is what the step sends on.
            if name in value:
                repeated.append(FieldError(("query", name), "sent more than once"))
            value[name] = _convert(text, properties.get(name, {}).get("type"))
        errors = repeated or self.validator.errors(value, root="query")
        if errors:
            msg = "The query parameters are not valid."
            raise ValidationFailed(msg, errors=errors)
        return value


# A number in a query spelled as JSON spells it: ASCII digits, no "+", no "_", no spaces, no
# NaN or Infinity (Python's int() and float() take all of them: "1_0" as 10, Arabic-Indic digits too).
_JSON_INTEGER: Final = re.compile(r"-?(0|[1-9][0-9]*)")
_JSON_NUMBER: Final = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _convert(text: str, kind: str | None) -> Any:
    """A query string value as its schema type, or the text when it does not convert (so
    the validator reports it)."""
    if kind == "integer" and _JSON_INTEGER.fullmatch(text):
        return int(text)
    if kind == "number" and _JSON_NUMBER.fullmatch(text):
        return float(text)
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text
