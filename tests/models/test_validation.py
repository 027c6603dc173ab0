"""The bounded request validator (contract §4, §5): sizes first, at most 50 errors, unknown
fields found lazily. Counting containers show how much of a hostile value was looked at."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import attrs
import pytest

from app.errors import MAX_VALIDATION_ERRORS, FieldError, ValidationFailed
from app.models.schema import schema_field, schema_of
from app.models.validation import DEFAULT_MAX_ITEMS, DEFAULT_MAX_PROPERTIES, SchemaValidator, unbounded_paths
from app.pipeline.registry import load_checked
from app.plugins import make_plugin_manager
from plugins.auth.models import LoginRequest, RefreshRequest
from plugins.users.models import ROLES_MAX, Pagination, UserCreate, UserPatch, UserRegister
from tests.integration.conftest import DEFAULT_PIPELINES


class CountingList(list[Any]):
    """A list that counts how many of its items were looked at."""

    looked = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            self.looked += 1
            yield item

    def __getitem__(self, index: Any) -> Any:
        self.looked += 1
        return super().__getitem__(index)


class CountingDict(dict[str, Any]):
    """A dict that counts how many of its keys were looked at by iteration."""

    looked = 0

    def __iter__(self) -> Iterator[str]:
        for key in super().__iter__():
            self.looked += 1
            yield key

    def items(self) -> Any:
        raise AssertionError("the validator must not walk every item of a closed object")


@attrs.frozen(kw_only=True)
class Tag:
    """A nested object."""

    name: str = schema_field(description="Name.", maxLength=10)


@attrs.frozen(kw_only=True)
class Loose:
    """A team's model that declares no maxima."""

    tags: list[Tag] = schema_field(description="Tags.")
    labels: dict[str, int] = schema_field(description="Labels.")
    note: str = schema_field(description="Note.")


PATCH = SchemaValidator(schema_of(UserPatch))


def locs(errors: list[FieldError]) -> list[tuple[str | int, ...]]:
    return [error.loc for error in errors]


def test_an_oversized_list_is_one_error_and_none_of_its_items_is_looked_at() -> None:
    roles = CountingList(["Not A Role"] * 100_000)

    errors = PATCH.errors({"roles": roles, "email": "nope"})

    assert errors == [FieldError(("body", "roles"), f"must have at most {ROLES_MAX} items")]
    assert roles.looked == 0


def test_sizes_come_before_every_other_rule() -> None:
    # The bad email is not reported while a size is wrong: its pattern is never run.
    errors = PATCH.errors({"email": "x" * 10_000, "full_name": "y" * 300, "password": "short"})

    assert errors == [
        FieldError(("body", "email"), "must be at most 254 characters"),
        FieldError(("body", "full_name"), "must be at most 200 characters"),
    ]


def test_a_list_within_its_maximum_is_checked_item_by_item() -> None:
    roles = CountingList(["ok", "Not A Role"])

    errors = PATCH.errors({"roles": roles})

    assert errors == [FieldError(("body", "roles", 1), "is not in the expected format")]
    assert roles.looked >= 2


def test_one_oversized_item_is_a_size_error_at_its_place() -> None:
    assert PATCH.errors({"roles": ["user", "a" * 65]}) == [
        FieldError(("body", "roles", 1), "must be at most 64 characters")
    ]


def test_unknown_keys_are_found_lazily_and_stop_one_past_the_cap() -> None:
    body = CountingDict({f"k{n}": n for n in range(100_000)})

    errors = PATCH.errors(body)

    assert len(errors) == MAX_VALIDATION_ERRORS + 1
    assert {error.msg for error in errors} == {"unknown field"}
    assert body.looked <= MAX_VALIDATION_ERRORS + 1 + len(schema_of(UserPatch)["properties"])


def test_size_errors_alone_name_no_unknown_field() -> None:
    body = {"nickname": "a", "roles": ["user"] * (ROLES_MAX + 1)}

    assert locs(PATCH.size_errors(body)) == [("body", "roles")]
    assert locs(PATCH.errors(body)) == [("body", "nickname"), ("body", "roles")]


def test_errors_within_the_maxima_stop_one_past_the_cap() -> None:
    errors = PATCH.errors({"roles": ["Not A Role"] * ROLES_MAX, "email": "nope", "password": "short"})

    assert len(errors) == MAX_VALIDATION_ERRORS + 1


def test_every_error_is_still_reported_below_the_cap() -> None:
    errors = SchemaValidator(schema_of(UserRegister)).errors({"email": "nope", "nickname": 1})

    assert locs(errors) == [("body", "email"), ("body", "nickname"), ("body", "password")]
    assert [e.msg for e in errors] == ["is not in the expected format", "unknown field", "field required"]


def test_nested_objects_have_their_sizes_and_unknown_fields_checked() -> None:
    loose = SchemaValidator(schema_of(Loose))

    errors = loose.errors({"tags": [{"name": "a" * 11}, {"name": "b", "colour": "red"}], "labels": {}, "note": ""})

    assert errors == [
        FieldError(("body", "tags", 0, "name"), "must be at most 10 characters"),
        FieldError(("body", "tags", 1, "colour"), "unknown field"),
    ]
    errors = loose.errors({"tags": [{"name": 5}], "labels": {"a": "b"}, "note": ""})
    assert errors == [
        FieldError(("body", "labels", "a"), "expected an integer"),
        FieldError(("body", "tags", 0, "name"), "expected a string"),
    ]


def test_containers_without_a_declared_maximum_get_the_default_one() -> None:
    loose = SchemaValidator(schema_of(Loose))
    tags = CountingList([{"name": "a"}] * (DEFAULT_MAX_ITEMS + 1))
    labels = {f"k{n}": n for n in range(DEFAULT_MAX_PROPERTIES + 1)}

    errors = loose.errors({"tags": tags, "labels": labels, "note": ""})

    assert errors == [
        FieldError(("body", "labels"), f"must have at most {DEFAULT_MAX_PROPERTIES} fields"),
        FieldError(("body", "tags"), f"must have at most {DEFAULT_MAX_ITEMS} items"),
    ]
    assert tags.looked == 0
    assert unbounded_paths(schema_of(Loose)) == ["tags", "labels", "note"]


def test_a_non_object_body_is_one_type_error() -> None:
    assert PATCH.errors(CountingList(range(100_000))) == [FieldError(("body",), "expected a JSON object")]


def test_validation_failed_lists_at_most_fifty_and_says_when_it_left_some_out() -> None:
    many = (FieldError(("body", n), "unknown field") for n in range(10**9))  # never all built

    problem = ValidationFailed("The request body is not valid.", errors=many)

    body = problem.body("req-1")
    assert len(body["errors"]) == MAX_VALIDATION_ERRORS
    assert body["detail"] == (f"The request body is not valid. Only the first {MAX_VALIDATION_ERRORS} "
                              "errors found are listed.")
    few = ValidationFailed("Bad.", errors=[FieldError(("body", "a"), "unknown field")])
    assert few.body("req-1")["detail"] == "Bad."
    assert len(few.body("req-1")["errors"]) == 1


class ReprSpy(list[Any]):
    """A list that counts how often something built its repr."""

    reprs = 0

    def __repr__(self) -> str:
        self.reprs += 1
        return super().__repr__()


@attrs.frozen(kw_only=True)
class Choice:
    """A model with an enum."""

    kind: Literal["a", "b"] = schema_field(description="Kind.")


def test_a_list_refused_where_a_string_belongs_is_never_repr_d() -> None:
    # jsonschema's messages begin with the instance's repr: 10 ms for a hostile list of 260,000.
    value = ReprSpy(["Not A Role"] * 10)

    assert PATCH.errors({"email": value}) == [FieldError(("body", "email"), "expected a string")]
    assert PATCH.errors(value) == [FieldError(("body",), "expected a JSON object")]
    assert value.reprs == 0


def test_a_list_refused_by_an_enum_is_never_repr_d() -> None:
    value = ReprSpy(["a"])

    errors = SchemaValidator(schema_of(Choice)).errors({"kind": value})

    assert FieldError(("body", "kind"), "must be one of a, b") in errors
    assert value.reprs == 0


REQUEST_MODELS: tuple[type[Any], ...] = (UserRegister, UserCreate, UserPatch, Pagination, LoginRequest, RefreshRequest)


def _request_models() -> list[type[Any]]:
    """The users and auth request models, and every model a default pipeline reads a body or query with."""
    registry, pipelines = load_checked(DEFAULT_PIPELINES, make_plugin_manager())
    named = {name for p in pipelines.pipelines for name in (p.body, p.query) if name is not None}
    models: dict[str, type[Any]] = {model.__name__: model for model in REQUEST_MODELS}
    models.update((name, registry.models[name]) for name in named)
    return [models[name] for name in sorted(models)]


@pytest.mark.parametrize("model", _request_models(), ids=lambda model: str(model.__name__))
def test_every_request_model_declares_every_maximum(model: type[Any]) -> None:
    assert unbounded_paths(schema_of(model)) == []
