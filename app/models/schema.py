"""attrs classes → OpenAPI 3.0 schema objects, the one description of every body model.

The same schema feeds the OpenAPI document and the request validator (openapi-schema-
validator), so what the docs promise is what the service enforces. Constraints come from
field metadata written with `schema_field`.
"""

from __future__ import annotations

import datetime
import types
import typing
from collections.abc import Collection
from typing import Any

import attrs

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    typing.Any: {},
}


def schema_field(*, description: str, **kwargs: Any) -> Any:
    """An attrs field with its OpenAPI description and constraints.

    Keyword arguments attrs knows (`default`, `factory`, `validator`, ...) go to
    `attrs.field`; the rest (`minLength`, `maxLength`, `pattern`, `minimum`, `maximum`,
    `minItems`, `example`, `nullable`, ...) go into the schema.
    """
    attrs_args = {k: kwargs.pop(k) for k in ("default", "factory", "validator", "converter", "alias") if k in kwargs}
    return attrs.field(metadata={"openapi": {"description": description, **kwargs}}, **attrs_args)


SCHEMAS_PREFIX = "#/components/schemas/"


def schema_of(cls: type[Any], *, components: Collection[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.0 schema of an attrs class: every field, `required` for those without
    a default, and no other properties (the validator refuses unknown keys), unless the class
    says ``ignores_unknown_fields: ClassVar[bool] = True`` (a protocol's form whose standard
    says to ignore what it does not know, as RFC 6749 §3.2 does).

    A field whose class is named in `components` (the OpenAPI document's) is a `$ref` to it, so
    a client generated from the document has one class for a user, listed or not; without
    `components` the schema stands alone, as the validators need it.
    """
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required = []
    for field in attrs.fields(cls):
        prop = _schema_of_type(hints[field.name], components)
        extra = field.metadata.get("openapi", {})
        if "$ref" in prop and extra:
            prop = {"allOf": [prop]}  # OpenAPI 3.0 ignores whatever stands beside a $ref
        prop.update(extra)
        if prop.get("nullable") is False:
            del prop["nullable"]
        properties[field.name] = prop
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif isinstance(field.default, str | int | float | bool):
            prop.setdefault("default", field.default)
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": bool(getattr(cls, "ignores_unknown_fields", False))}
    if required:
        schema["required"] = required
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().split("\n\n")[0]
    return schema


def _schema_of_type(tp: Any, components: Collection[str]) -> dict[str, Any]:
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if attrs.has(tp):
        # By name: a model a plugin extends is another class under the same name.
        return {"$ref": SCHEMAS_PREFIX + tp.__name__} if tp.__name__ in components else schema_of(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            msg = f"only `X | None` unions are supported in models, got {tp}"
            raise TypeError(msg)
        inner = _schema_of_type(rest[0], components)
        return {"allOf": [inner], "nullable": True} if "$ref" in inner else {**inner, "nullable": True}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": _schema_of_type(args[0], components) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of_type(args[1], components) if args else {}}
    if origin is typing.Literal:
        return _enum(args)
    msg = f"no OpenAPI schema for type {tp!r}"
    raise TypeError(msg)


def _enum(values: tuple[Any, ...]) -> dict[str, Any]:
    """A `Literal`'s schema, with its type: an enum alone leaves generated clients a value of any type."""
    kinds = {type(value) for value in values}
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    return {**_SCALARS[kind], "enum": list(values)} if kind in _SCALARS else {"enum": list(values)}
