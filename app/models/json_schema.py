"""An OpenAPI 3.0 schema object (what `schema_of` gives) as plain JSON Schema (draft 07).

The AsyncAPI document describes payloads in JSON Schema, which has no `nullable` and spells
a single example `examples`. The models keep one description (their OpenAPI schema); this
is its translation, so the events' docs show the same fields, rules and examples.
"""

from __future__ import annotations

from typing import Any

_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` translated: `nullable: true` becomes a "null" type, `example` `examples`.

    ``$ref``s are kept as they are: the AsyncAPI document holds the models at the same
    ``#/components/schemas/NAME`` path as the OpenAPI document.
    """
    out = {k: v for k, v in schema.items() if k not in ("nullable", "example")}
    if "example" in schema:
        out["examples"] = [schema["example"]]
    if isinstance(out.get("properties"), dict):
        out["properties"] = {name: to_json_schema(sub) for name, sub in out["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = to_json_schema(out[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [to_json_schema(sub) for sub in out[key]]
    return _nullable(out) if schema.get("nullable") is True else out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
        return schema
    if isinstance(kind, list):
        schema["type"] = kind if "null" in kind else [*kind, "null"]
        return schema
    if kind is None and "enum" not in schema:
        # A $ref or a combination: the null joins as an alternative.
        return {"anyOf": [schema, {"type": "null"}]}
    return schema
