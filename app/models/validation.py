"""Validate JSON against a model's schema, with every bad field reported and no value echoed.

jsonschema's own messages quote the offending value ("'hunter2' is too short"); a password
must never come back in an error, so messages here are written from the rule alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator

from app.errors import FieldError

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
    "nullable": "must not be null",
}


def _message(error: ValidationError) -> str:
    rule, value = str(error.validator), error.validator_value
    if rule == "type":
        return f"expected {_TYPE_WORDS.get(str(value), value)}"
    if rule == "enum":
        return f"must be one of {', '.join(map(str, value))}"
    return _RULE_MESSAGES.get(rule, "is not valid").format(value)


class SchemaValidator:
    """Checks JSON values against one OpenAPI 3.0 schema; built once per model at start-up."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator = OAS30Validator(schema)

    def errors(self, value: Any, root: str = "body") -> list[FieldError]:
        # jsonschema reports a `required` failure once per missing key, each listing them all.
        unique = dict.fromkeys(self._iter(value, root))
        return sorted(unique, key=lambda e: [str(p) for p in e.loc])

    def _iter(self, value: Any, root: str) -> Iterator[FieldError]:
        for error in self._validator.iter_errors(value):
            loc = (root, *error.absolute_path)
            if error.validator == "required":
                present = error.instance if isinstance(error.instance, dict) else {}
                for name in error.validator_value:
                    if name not in present:
                        yield FieldError((*loc, name), "field required")
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = error.schema.get("properties", {})
                for name in error.instance:
                    if name not in allowed:
                        yield FieldError((*loc, name), "unknown field")
            else:
                yield FieldError(loc, _message(error))
