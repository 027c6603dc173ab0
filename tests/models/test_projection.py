"""The compiled answer check (contract §7): every rule on its own, and unknown fields dropped
at every depth."""

from __future__ import annotations

import datetime
from typing import Any, Literal

import attrs
import pytest

from app.models.projection import ShapeMismatch, projection_of, projection_of_schema
from app.models.schema import schema_field
from plugins.users.models import User, UserPage

RECORD: dict[str, Any] = {
    "id": 7, "email": "ann@example.com", "full_name": None, "is_active": True, "is_verified": False,
    "roles": ["user"], "created_at": "2026-11-30T16:00:46.123456Z", "updated_at": "2026-11-30T16:00:47.000001Z",
}
STORED = {**RECORD, "password_hash": "$argon2id$v=19$secret", "sessions_revoked_at": None}

USER = projection_of(User)
PAGE = projection_of(UserPage)


def mismatch(project: Any, value: Any) -> str:
    with pytest.raises(ShapeMismatch) as caught:
        project(value)
    return str(caught.value)


def test_a_stored_record_keeps_only_the_public_fields_in_a_new_dict() -> None:
    stored = dict(STORED)

    public = USER(stored)

    assert public == RECORD
    assert stored == STORED  # the answer itself is left as it was
    assert public is not stored


def test_a_page_drops_unknown_fields_at_every_depth() -> None:
    page = {"items": [STORED, {**STORED, "id": 8}], "total": 2, "limit": 50, "offset": 0, "next": "/x"}

    assert PAGE(page) == {"items": [RECORD, {**RECORD, "id": 8}], "total": 2, "limit": 50, "offset": 0}


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"hello": "world"}, "id: missing required field"),
        ([1, 2, 3], "(the answer): expected a JSON object"),
        ("a string", "(the answer): expected a JSON object"),
        (None, "(the answer): must not be null"),
        ({k: v for k, v in STORED.items() if k != "created_at"}, "created_at: missing required field"),
        ({**STORED, "id": "7"}, "id: expected an integer"),
        ({**STORED, "id": True}, "id: expected an integer"),
        ({**STORED, "id": 7.0}, "id: expected an integer"),
        ({**STORED, "is_active": 1}, "is_active: expected true or false"),
        ({**STORED, "email": None}, "email: must not be null"),
        ({**STORED, "full_name": 5}, "full_name: expected a string"),
        ({**STORED, "roles": {"user": True}}, "roles: expected a list"),
        ({**STORED, "roles": ["user", 5]}, "roles[1]: expected a string"),
        ({**STORED, "created_at": "yesterday"}, "created_at: expected an RFC 3339 date-time"),
        ({**STORED, "created_at": 1764518446}, "created_at: expected an RFC 3339 date-time"),
    ],
    ids=["another-shape", "list-for-object", "string-for-object", "null-answer", "missing-field", "string-for-int",
         "bool-for-int", "float-for-int", "int-for-bool", "null-not-nullable", "int-for-string", "object-for-list",
         "bad-item", "not-a-date", "epoch-for-date"],
)
def test_a_record_that_breaks_a_rule_is_a_mismatch_naming_where_and_which(answer: Any, problem: str) -> None:
    assert mismatch(USER, answer) == problem


def test_a_mismatch_never_carries_the_value_it_found() -> None:
    secret = "$argon2id$v=19$do-not-log"
    with pytest.raises(ShapeMismatch) as caught:
        USER({**STORED, "email": ["x"], "password_hash": secret, "full_name": secret})
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value.args)
    assert caught.value.loc == ["email"]


def test_a_bad_item_of_a_page_is_located_by_its_index() -> None:
    page = {"items": [STORED, {**STORED, "updated_at": "2026-11-30"}], "total": 2, "limit": 50, "offset": 0}

    assert mismatch(PAGE, page) == "items[1].updated_at: expected an RFC 3339 date-time"
    assert mismatch(PAGE, [STORED]) == "(the answer): expected a JSON object"
    assert mismatch(PAGE, {**page, "items": {"0": STORED}}) == "items: expected a list"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-11-30T16:00:46Z", True),
        ("2026-11-30T16:00:46.1+01:00", True),
        ("2026-11-30T16:00:46.123456789-05:30", True),
        ("2026-11-30t16:00:46z", True),
        ("2016-12-31T23:59:60Z", True),  # a leap second is RFC 3339
        ("2026-11-30T16:00:46", False),  # no time zone
        ("2026-11-30 16:00:46Z", False),
        ("2026-02-30T16:00:46Z", False),
        ("2026-11-30T24:00:00Z", False),
        ("2026-11-30T16:00:46+0100", False),
        ("2026-11-30", False),
        ("\u0662026-11-30T16:00:46Z", False),  # an Arabic-Indic digit
        ("2026-11-30T16:00:46Z\n", False),
    ],
)
def test_date_times_are_rfc_3339_with_a_time_zone(text: str, ok: bool) -> None:
    project = projection_of_schema({"type": "string", "format": "date-time"})
    if ok:
        assert project(text) == text
    else:
        assert mismatch(project, text) == "(the answer): expected an RFC 3339 date-time"


@attrs.frozen(kw_only=True)
class Part:
    """A nested model."""

    name: str = schema_field(description="Name.")


@attrs.frozen(kw_only=True)
class Everything:
    """Every kind of field a model may have."""

    level: Literal[1, 2] = schema_field(description="An enum.")
    ratio: float = schema_field(description="A number.")
    part: Part | None = schema_field(description="A nullable nested object.")
    counts: dict[str, int] = schema_field(description="A map.")
    anything: Any = schema_field(description="Anything.")
    extra: dict[str, Any] = schema_field(description="A free-form object.")
    when: datetime.datetime | None = schema_field(default=None, description="Optional and nullable.")


EVERYTHING = projection_of(Everything)
GOOD: dict[str, Any] = {
    "level": 1, "ratio": 0.5, "part": {"name": "a"}, "counts": {"a": 1}, "anything": [1, {"b": None}],
    "extra": {"free": ["form"]},
}


def test_every_kind_of_field_is_checked() -> None:
    assert EVERYTHING({**GOOD, "unknown": 1}) == GOOD
    assert EVERYTHING({**GOOD, "ratio": 2, "part": None, "when": None}) == {**GOOD, "ratio": 2, "part": None,
                                                                           "when": None}
    assert EVERYTHING({**GOOD, "part": {"name": "a", "secret": "x"}})["part"] == {"name": "a"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"level": 3}, "level: must be one of 1, 2"),
        ({"level": True}, "level: must be one of 1, 2"),  # true == 1 in Python, not in JSON
        ({"level": [1]}, "level: must be one of 1, 2"),
        ({"ratio": True}, "ratio: expected a number"),
        ({"ratio": "0.5"}, "ratio: expected a number"),
        ({"part": {}}, "part.name: missing required field"),
        ({"part": [{"name": "a"}]}, "part: expected a JSON object"),
        ({"counts": {"someone@example.com": "1"}}, "counts.*: expected an integer"),  # a map's keys are data
        ({"extra": ["form"]}, "extra: expected a JSON object"),
        ({"when": "soon"}, "when: expected an RFC 3339 date-time"),
    ],
)
def test_every_kind_of_field_has_its_rule(change: dict[str, Any], problem: str) -> None:
    assert mismatch(EVERYTHING, {**GOOD, **change}) == problem


def test_an_absent_optional_field_stays_absent() -> None:
    assert "when" not in EVERYTHING(GOOD)
