from __future__ import annotations

from typing import Any

import pytest

from app.models.schema import schema_of
from app.models.validation import SchemaValidator
from plugins.users.models import Pagination, UserCreate, UserPatch, UserRegister


def bad_fields(model: type[Any], value: dict[str, Any]) -> list[tuple[str | int, ...]]:
    return [error.loc for error in SchemaValidator(schema_of(model)).errors(value)]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com", "password": "correct horse"},
        {"email": "ada@example.com", "password": "12345678", "full_name": None},
        {"email": "ada@example.com", "password": "x" * 128, "full_name": "x" * 200},
        {"email": "ada@example.com", "password": "12345678", "full_name": "Zoë \u05e9\u05dc\u05d5\u05dd \u7530\u4e2d"},
    ],
)
def test_register_accepts(body: dict[str, Any]) -> None:
    assert bad_fields(UserRegister, body) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ada@example.com", "password": "1234567"}, "password"),
        ({"email": "ada@example.com", "password": "x" * 129}, "password"),
        ({"email": "ada@example.com", "password": "12345678", "full_name": "x" * 201}, "full_name"),
        # a C1 control, Unicode's line separator, a bidirectional override, an isolate
        *[({"email": "ada@example.com", "password": "12345678", "full_name": f"Ann{c}Lee"}, "full_name")
          for c in ("\x85", "\x9b", "\u2028", "\u202e", "\u2067", "\u200b", "\ufeff", "\uffff")],
        ({"email": "not an email", "password": "12345678"}, "email"),
        ({"email": "ada@localhost", "password": "12345678"}, "email"),
        ({"email": "ada@example.com", "password": "12345678", "roles": ["admin"]}, "roles"),
        # JSON Schema's `$` is the end (ECMA-262), not also the place before a final line break
        ({"email": "ada@example.com", "password": "12345678", "full_name": "Bob\n"}, "full_name"),
        ({"email": "ada@example.com\n", "password": "12345678"}, "email"),
    ],
)
def test_register_refuses(body: dict[str, Any], field: str) -> None:
    assert any(field in loc for loc in bad_fields(UserRegister, body))


def test_create_takes_roles_and_is_active() -> None:
    body = {"email": "ada@example.com", "password": "12345678", "roles": ["admin", "user"], "is_active": False}
    assert bad_fields(UserCreate, body) == []


@pytest.mark.parametrize("roles", [["admin\n"], ["user", "user"]])
def test_a_role_with_a_line_break_or_twice_is_refused(roles: list[str]) -> None:
    body = {"email": "ada@example.com", "password": "12345678", "roles": roles}
    assert any("roles" in loc for loc in bad_fields(UserCreate, body))


def test_patch_fields_are_all_optional_and_only_full_name_is_nullable() -> None:
    assert bad_fields(UserPatch, {}) == []
    assert bad_fields(UserPatch, {"full_name": None}) == []
    for field in ("email", "password", "roles", "is_active"):
        assert bad_fields(UserPatch, {field: None}) != [], field


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        ({}, True),
        ({"limit": 1, "offset": 0}, True),
        ({"limit": 500}, True),
        ({"limit": 0}, False),
        ({"limit": 501}, False),
        ({"offset": -1}, False),
    ],
)
def test_pagination_bounds(query: dict[str, Any], ok: bool) -> None:
    assert (bad_fields(Pagination, query) == []) is ok
