"""Validate JSON against a model's schema: sizes first, every bad field reported up to a cap,
and no value echoed.

A hostile body must cost little: a PATCH whose ``roles`` is a list of 90,000 items is
answered with one error about its size, not 90,000 about its items. So a value is checked
in two passes, both prepared once per model at start-up:

1. The bounds pass, compiled from the schema into closures: every array, map and string is
   measured against its declared maximum (``maxItems``, ``maxProperties``, ``maxLength``)
   before any other rule looks at it. An oversized one is one error and is never descended
   into; what lies within the maxima is walked, which the maxima bound. The same pass names
   the unknown fields of closed objects, lazily, so 100,000 unknown keys stop at the cap.
2. jsonschema (openapi-schema-validator) for every other rule, only when every size is
   within its maximum (so its work is bounded too), iterated lazily and stopped at the cap.

Both stop once they have found one error more than a 422 lists
(`app.errors.MAX_VALIDATION_ERRORS`), so the answer can say that some were left out.

An array or a map whose schema declares no maximum is held to `DEFAULT_MAX_ITEMS` /
`DEFAULT_MAX_PROPERTIES`; the built-in request models declare every maximum
(`unbounded_paths` lists what a model leaves undeclared).

jsonschema's own messages quote the offending value ("'hunter2' is too short"); a password
must never come back in an error, so messages here are written from the rule alone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from jsonschema import validators
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator

from app.errors import MAX_VALIDATION_ERRORS, FieldError

DEFAULT_MAX_ITEMS: Final = 1000
DEFAULT_MAX_PROPERTIES: Final = 1000
# One more than a 422 lists: finding it is how the answer knows that some were left out.
ERRORS_WANTED: Final = MAX_VALIDATION_ERRORS + 1

_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "object": "a JSON object", "array": "a list",
}

_RULE_MESSAGES = {
    "minLength": "must be at least {} characters",
    "maxLength": "must be at most {} characters",
    "pattern": "is not in the expected format",
    "format": "is not a valid {}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "minProperties": "must have at least {} fields",
    "maxProperties": "must have at most {} fields",
    "nullable": "must not be null",
}

Loc = tuple[str | int, ...]
# (is it a size error?, the error). Size errors stop the second pass.
Finding = tuple[bool, FieldError]
# A compiled bounds check: (value, where it is, whether to name unknown fields) → findings.
Bounds = Callable[[Any, Loc, bool], Iterable[Finding]]


def _message(error: ValidationError) -> str:
    rule, value = str(error.validator), error.validator_value
    if rule == "type":
        return f"expected {_TYPE_WORDS.get(str(value), value)}"
    if rule == "enum":
        return f"must be one of {', '.join(map(str, value))}"
    return _RULE_MESSAGES.get(rule, "is not valid").format(value)


def _too_big(loc: Loc, rule: str, limit: int) -> Finding:
    return True, FieldError(loc, _RULE_MESSAGES[rule].format(limit))


def _compile_bounds(schema: dict[str, Any]) -> Bounds | None:
    """The bounds check of one schema node, or None when nothing under it has a size."""
    kind = schema.get("type")
    if kind == "string":
        return _string_bounds(schema)
    if kind == "array":
        return _array_bounds(schema)
    if kind == "object" or "properties" in schema:
        return _object_bounds(schema)
    return None


def _string_bounds(schema: dict[str, Any]) -> Bounds | None:
    limit = schema.get("maxLength")
    if limit is None:
        return None

    def check(value: Any, loc: Loc, unknown: bool) -> Iterable[Finding]:
        # A plain function, not a generator: a string within bounds costs one len().
        if isinstance(value, str) and len(value) > limit:
            return (_too_big(loc, "maxLength", limit),)
        return ()

    return check


def _array_bounds(schema: dict[str, Any]) -> Bounds:
    limit: int = schema.get("maxItems", DEFAULT_MAX_ITEMS)
    items = _compile_bounds(schema.get("items", {}))

    def check(value: Any, loc: Loc, unknown: bool) -> Iterator[Finding]:
        if not isinstance(value, list):
            return
        if len(value) > limit:
            yield _too_big(loc, "maxItems", limit)
            return
        if items is not None:
            for index, item in enumerate(value):
                yield from items(item, (*loc, index), unknown)

    return check


def _object_bounds(schema: dict[str, Any]) -> Bounds:
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    closed = extra is False
    # A closed object's keys are bounded by its fields (unknown ones are errors, found lazily);
    # any other object may hold any number of keys, so it gets a maximum.
    limit: int | None = schema.get("maxProperties", None if closed else DEFAULT_MAX_PROPERTIES)
    fields = [(name, bounds) for name, sub in properties.items() if (bounds := _compile_bounds(sub)) is not None]
    extra_check = _compile_bounds(extra) if isinstance(extra, dict) else None

    def check(value: Any, loc: Loc, unknown: bool) -> Iterator[Finding]:
        if not isinstance(value, dict):
            return
        if limit is not None and len(value) > limit:
            yield _too_big(loc, "maxProperties", limit)
            return
        for name, field_check in fields:
            if name in value:
                yield from field_check(value[name], (*loc, name), unknown)
        if extra_check is not None:
            for key, item in value.items():
                if key not in properties:
                    yield from extra_check(item, (*loc, key), unknown)
        if closed and unknown:
            for key in value:
                if key not in properties:
                    yield False, FieldError((*loc, key), "unknown field")

    return check


def _open_copy(schema: Any) -> Any:
    """The schema without ``additionalProperties: false`` anywhere: the bounds pass names
    unknown fields lazily, where jsonschema would first gather every one of them."""
    if isinstance(schema, list):
        return [_open_copy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: _open_copy(value) for key, value in schema.items()
            if not (key == "additionalProperties" and value is False)}


def unbounded_paths(schema: dict[str, Any], path: str = "") -> list[str]:
    """Where a schema leaves a size undeclared: arrays without ``maxItems``, open objects
    without ``maxProperties``, strings without ``maxLength`` (an ``enum`` bounds a string)."""
    found: list[str] = []
    kind = schema.get("type")
    here = path or "(root)"
    if kind == "string" and "maxLength" not in schema and "enum" not in schema:
        found.append(here)
    elif kind == "array":
        if "maxItems" not in schema:
            found.append(here)
        found += unbounded_paths(schema.get("items", {}), f"{path}[]")
    elif kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties", True)
        if extra is not False and "maxProperties" not in schema:
            found.append(here)
        for name, sub in schema.get("properties", {}).items():
            found += unbounded_paths(sub, f"{path}.{name}" if path else name)
        if isinstance(extra, dict):
            found += unbounded_paths(extra, f"{path}.*" if path else "*")
    return found


def _loc_key(error: FieldError) -> list[str]:
    return [str(part) for part in error.loc]


# jsonschema's own `type` and `enum` checks begin their messages with the whole instance's repr:
# for a list or object refused whole, ~40 ns an item of a hostile body (10 ms for 260,000), and
# the messages are never read here (`_message` words the errors). These refuse a list or object
# without it; everything else goes to the originals.
_KEYWORDS: Final = OAS30Validator.VALIDATORS


def _type_without_repr(validator: Any, data_type: Any, instance: Any, schema: dict[str, Any]
                       ) -> Iterator[ValidationError]:
    if isinstance(instance, list | dict):
        if not validator.is_type(instance, data_type):
            yield ValidationError(f"is not of type {data_type!r}")
        return
    yield from _KEYWORDS["type"](validator, data_type, instance, schema)


def _enum_without_repr(validator: Any, enums: Any, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if isinstance(instance, list | dict) and not any(isinstance(each, list | dict) for each in enums):
        yield ValidationError("is not one of the listed values")
        return
    yield from _KEYWORDS["enum"](validator, enums, instance, schema)


def _to_the_end(pattern: str) -> str:
    """`pattern` with each `$` outside a character class made `\\Z`: in ECMA-262, the regex
    dialect of JSON Schema, `$` matches at the very end only; in Python also before a final
    newline, so "admin\\n" passed "^[a-z]+$" and a role or a name could end in a line break."""
    out: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            out.append("\\Z")
            continue
        out.append(char)
    return "".join(out)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_to_the_end(pattern))


def _pattern_to_the_end(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
                        ) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError("does not match the pattern")


_Validator: Final = validators.extend(
    OAS30Validator, {"type": _type_without_repr, "enum": _enum_without_repr, "pattern": _pattern_to_the_end}
)


class SchemaValidator:
    """Checks JSON values against one OpenAPI 3.0 schema; built once per model at start-up."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._bounds = _compile_bounds(schema)
        self._root_object = schema.get("type") == "object" and not schema.get("nullable", False)
        self._validator = _Validator(_open_copy(schema))

    def size_errors(self, value: Any, root: str = "body") -> list[FieldError]:
        """Only the sizes (at most `ERRORS_WANTED` errors): what is checked before anything
        else, even before plugins see the value."""
        if self._bounds is None:
            return []
        found: list[FieldError] = []
        for _, error in self._bounds(value, (root,), False):
            found.append(error)
            if len(found) >= ERRORS_WANTED:
                break
        return sorted(found, key=_loc_key)

    def errors(self, value: Any, root: str = "body") -> list[FieldError]:
        """Every bad field, sorted by location; at most `ERRORS_WANTED` of them (one more than
        a 422 lists, so `ValidationFailed` can say that some were left out)."""
        if self._root_object and not isinstance(value, dict):
            # What jsonschema would say, without its message's repr of the whole value (10 ms
            # for a hostile list of 260,000 strings).
            return [FieldError((root,), f"expected {_TYPE_WORDS['object']}")]
        found: dict[FieldError, None] = {}  # jsonschema may report one missing field twice
        oversized = False
        if self._bounds is not None:
            for is_size, error in self._bounds(value, (root,), True):
                oversized = oversized or is_size
                found[error] = None
                if len(found) >= ERRORS_WANTED:
                    break
        # Oversized containers are never handed to jsonschema: it would walk every item.
        if not oversized and len(found) < ERRORS_WANTED:
            for error in self._rule_errors(value, root):
                found[error] = None
                if len(found) >= ERRORS_WANTED:
                    break
        return sorted(found, key=_loc_key)

    def _rule_errors(self, value: Any, root: str) -> Iterator[FieldError]:
        for error in self._validator.iter_errors(value):
            loc = (root, *error.absolute_path)
            if error.validator == "required":
                present = error.instance if isinstance(error.instance, dict) else {}
                for name in error.validator_value:
                    if name not in present:
                        yield FieldError((*loc, name), "field required")
            else:
                yield FieldError(loc, _message(error))
