"""Models nested in models: `$ref`s to the OpenAPI document's components, or whole for a validator."""

from __future__ import annotations

from typing import Literal

import attrs

from app.models.schema import schema_field, schema_of


@attrs.frozen(kw_only=True)
class Item:
    """A thing."""

    name: str = schema_field(description="Its name.")


@attrs.frozen(kw_only=True)
class Page:
    """Things."""

    items: list[Item] = schema_field(description="The things.")
    first: Item = schema_field(description="The first thing.")
    best: Item | None = schema_field(description="The best one, if any.", default=None)


def test_a_model_named_in_the_components_is_referenced_wherever_it_stands() -> None:
    # A generated client then has one class for a thing, listed or not (it had UserPageItemsItem).
    schema = schema_of(Page, components={"Item", "Page"})
    ref = {"$ref": "#/components/schemas/Item"}
    assert schema["properties"]["items"] == {"type": "array", "items": ref, "description": "The things."}
    # OpenAPI 3.0 ignores what stands beside a $ref: a description or nullable wraps it.
    assert schema["properties"]["first"] == {"allOf": [ref], "description": "The first thing."}
    assert schema["properties"]["best"] == {"allOf": [ref], "nullable": True, "description": "The best one, if any."}


def test_without_components_a_schema_stands_alone_for_the_validators() -> None:
    schema = schema_of(Page)
    item = {"name": {"type": "string", "description": "Its name."}}
    assert schema["properties"]["items"]["items"]["properties"] == item
    assert "$ref" not in str(schema)


def test_a_literal_is_an_enum_of_its_type() -> None:
    @attrs.frozen
    class Grant:
        kind: Literal["password"] = schema_field(description="Always password.")
        mixed: Literal["a", 1] = schema_field(description="Either.")

    properties = schema_of(Grant)["properties"]
    assert properties["kind"] == {"type": "string", "enum": ["password"], "description": "Always password."}
    assert properties["mixed"] == {"enum": ["a", 1], "description": "Either."}
