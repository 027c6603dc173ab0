"""Check an upstream answer against a model and keep only what the model declares, in one pass.

`projection_of(User)` compiles the model's OpenAPI schema (`app.models.schema.schema_of`)
into a tree of plain closures, once, when a step is built. Applied to a parsed JSON answer,
the projection returns a new value holding only the fields the model declares, or raises
`ShapeMismatch` naming the first place and rule the answer breaks, never the value found
there (an upstream record may carry a password hash).

The rules, the same at every depth (a page's items are checked like a lone record):

- object: a JSON object; every required field present; fields the model does not declare
  are dropped, never passed on. A list, a string or null where an object belongs is a mismatch.
- array: a JSON list (an object where a list belongs is a mismatch), each item checked.
- string, integer, number, boolean: exactly that JSON type. `true` is not an integer and
  `1.0` is not an integer (both are what a JSON parser says they are, not what Python's
  `isinstance` would let through).
- ``format: date-time``: RFC 3339 text with a time zone (`2026-11-28T07:26:00.123Z`).
- enum (`Literal[...]`): one of the listed values, of the same JSON type.
- nullable (`X | None`): null allowed; anywhere else null is a mismatch.
- a field typed `Any` (schema ``{}``) and a free-form `dict[str, Any]`: passed on as they are.

Value rules (``maxLength``, ``pattern``, ``minimum``...) are not checked: they say what the
service accepts from clients, and the shape is what the service relies on downstream.

Cost, per answer: one Python call per object, list and field visited, each an exact `type()`
test and a store into the new dict; a date-time adds one regex match and one
`datetime.fromisoformat`. No schema is interpreted per answer and jsonschema is never called;
for a user record that is about a dozen calls, small beside parsing the JSON it came in. A
successful check builds no error location (`try` costs nothing in CPython 3.11 until
something raises): the location is assembled while a `ShapeMismatch` unwinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from app.models.schema import schema_of

Projection = Callable[[Any], Any]
"""A compiled check: the projected value, or `ShapeMismatch`."""

_MISSING: Final = object()
_JSON_WORDS: Final = {
    "object": "a JSON object", "array": "a list", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false",
}
# Exact types, as a JSON parser makes them (bool is a subclass of int, so never isinstance).
_SCALAR_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
}
_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:(\d{2})(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


class ShapeMismatch(ValueError):
    """An answer that does not fit its model: where (`loc`, outermost first) and which rule.

    Neither says what value was found: the message is safe to log.
    """

    def __init__(self, rule: str, loc: list[str | int] | None = None) -> None:
        super().__init__(rule)
        self.rule = rule
        self.loc: list[str | int] = loc if loc is not None else []

    @property
    def where(self) -> str:
        """The location as a path, e.g. ``items[3].created_at``; ``(the answer)`` at the top."""
        path = ""
        for part in self.loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        return path or "(the answer)"

    def __str__(self) -> str:
        return f"{self.where}: {self.rule}"


def projection_of(model: type[Any]) -> Projection:
    """The compiled projection of an attrs model (see the module docstring for the rules)."""
    return projection_of_schema(schema_of(model))


def projection_of_schema(schema: dict[str, Any]) -> Projection:
    """The compiled projection of an OpenAPI 3.0 schema object as `schema_of` writes them."""
    check = _compile_non_null(schema)
    if not schema.get("nullable", False):
        return check

    def nullable(value: Any) -> Any:
        return None if value is None else check(value)

    return nullable


def _passed_on(value: Any) -> Any:
    return value


def _mismatch(expected: str, value: Any) -> ShapeMismatch:
    return ShapeMismatch("must not be null" if value is None else f"expected {expected}")


def _compile_non_null(schema: dict[str, Any]) -> Projection:
    if "enum" in schema:
        return _enum(schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema)
    if kind == "array":
        return _array(schema)
    if kind == "string" and schema.get("format") == "date-time":
        return _date_time
    if kind in _SCALAR_TYPES:
        return _scalar(kind)
    if kind is None:
        return _passed_on
    msg = f"no projection for schema type {kind!r}"
    raise TypeError(msg)


def _scalar(kind: str) -> Projection:
    allowed = _SCALAR_TYPES[kind]
    expected = _JSON_WORDS[kind]
    if len(allowed) == 1:
        exact = allowed[0]

        def check_exact(value: Any) -> Any:
            if type(value) is exact:
                return value
            raise _mismatch(expected, value)

        return check_exact

    def check_one_of(value: Any) -> Any:
        if type(value) in allowed:
            return value
        raise _mismatch(expected, value)

    return check_one_of


def _date_time(value: Any) -> Any:
    if type(value) is str and (match := _RFC3339.fullmatch(value)) is not None:
        # The regex checks the grammar, fromisoformat the ranges (no 2026-02-30).
        text = value.upper()
        if match.group(1) == "60":  # RFC 3339 allows a leap second; a datetime cannot hold one
            text = text[: match.start(1)] + "59" + text[match.end(1) :]
        try:
            datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return value
    raise _mismatch("an RFC 3339 date-time", value)


def _enum(values: list[Any]) -> Projection:
    # Pairs with the type, so 1 does not match true (1 == True in Python).
    allowed = frozenset((type(v), v) for v in values)
    rule = f"must be one of {', '.join(map(str, values))}"

    def check(value: Any) -> Any:
        try:
            if (type(value), value) in allowed:
                return value
        except TypeError:  # a list or an object: unhashable, and never one of them
            pass
        raise ShapeMismatch(rule)

    return check


def _object(schema: dict[str, Any]) -> Projection:
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    if not properties:
        return _map(projection_of_schema(extra)) if isinstance(extra, dict) and extra else _free_object
    required = set(schema.get("required", ()))
    fields = tuple((name, projection_of_schema(sub), name in required) for name, sub in properties.items())

    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise _mismatch("a JSON object", value)
        out = {}
        for name, project, needed in fields:
            item = value.get(name, _MISSING)
            if item is _MISSING:
                if needed:
                    raise ShapeMismatch("missing required field", [name])
                continue
            try:
                out[name] = project(item)
            except ShapeMismatch as exc:
                exc.loc.insert(0, name)
                raise
        return out

    return check


def _free_object(value: Any) -> Any:
    if type(value) is not dict:
        raise _mismatch("a JSON object", value)
    return value


def _map(project: Projection) -> Projection:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise _mismatch("a JSON object", value)
        out = {}
        for key, item in value.items():
            try:
                out[key] = project(item)
            except ShapeMismatch as exc:
                exc.loc.insert(0, "*")  # a map's keys are data, never logged
                raise
        return out

    return check


def _array(schema: dict[str, Any]) -> Projection:
    project = projection_of_schema(schema.get("items", {}))

    def check(value: Any) -> Any:
        if type(value) is not list:
            raise _mismatch("a list", value)
        try:
            return [project(item) for item in value]
        except ShapeMismatch:
            raise _at_first_bad_item(project, value) from None

    return check


def _at_first_bad_item(project: Projection, items: list[Any]) -> ShapeMismatch:
    """The mismatch of the first item that fails, with its index (found again on the failure
    path only, so the comprehension above stays free of bookkeeping)."""
    for index, item in enumerate(items):
        try:
            project(item)
        except ShapeMismatch as exc:
            exc.loc.insert(0, index)
            return exc
    return ShapeMismatch("expected a list")  # unreachable: projections are pure
