"""The stored user record as a login, a refresh or a mail link reads it: every field it relies
on is there and of its type, or the data service's answer is a 502 (contract §7)."""

from __future__ import annotations

from typing import Any

import pytest

from app import BadGateway, NotFound
from app.clients.dataservice import UpstreamReply
from plugins.users.records import user_record, user_with_email

STORED: dict[str, Any] = {
    "id": 7, "email": "ann@example.com", "full_name": None, "is_active": True, "is_verified": False,
    "roles": ["user"], "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
    "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA", "sessions_revoked_at": None,
}


class Lookup:
    """A data service answering every lookup by email with `items`."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    async def request(self, method: str, path: str, **_kwargs: Any) -> UpstreamReply:
        return UpstreamReply(200, {"items": self.items, "total": len(self.items)})


def test_a_whole_record_is_taken() -> None:
    assert user_record(STORED, with_hash=True) is STORED
    assert user_record({**STORED, "sessions_revoked_at": "2026-12-01T11:00:00.5+01:00"}, with_hash=True)


@pytest.mark.parametrize("broken", [
    {"is_verified": None}, {"is_verified": "no"}, {"sessions_revoked_at": "zzz"},
    {"sessions_revoked_at": "2026-12-01T11:00:00"},  # no time zone: no moment
    {"sessions_revoked_at": 1764586800}, {"password_hash": None},
])
def test_a_stored_field_of_the_wrong_type_is_a_502(broken: dict[str, Any]) -> None:
    with pytest.raises(BadGateway):
        user_record({**STORED, **broken}, with_hash=True)


@pytest.mark.parametrize("field", ["is_verified", "sessions_revoked_at", "password_hash", "email", "is_active"])
def test_a_stored_field_left_out_is_a_502(field: str) -> None:
    record = {name: value for name, value in STORED.items() if name != field}
    with pytest.raises(BadGateway):
        user_record(record, with_hash=True)


async def test_a_lookup_finding_a_record_without_an_address_is_a_502_not_an_unknown_email() -> None:
    # Read as "no such user", a login answered 401 "incorrect email or password" and hid the fault.
    nameless = {name: value for name, value in STORED.items() if name != "email"}
    with pytest.raises(BadGateway):
        await user_with_email(Lookup([nameless]), "ann@example.com", None)  # type: ignore[arg-type]  # a stand-in


async def test_a_lookup_takes_the_record_with_exactly_that_address() -> None:
    other = {**STORED, "id": 8, "email": "ann@example.com.evil"}
    found = await user_with_email(Lookup([other, STORED]), "ann@example.com", None)  # type: ignore[arg-type]
    assert found is STORED
    assert await user_with_email(Lookup([other]), "ann@example.com", None) is None  # type: ignore[arg-type]


class NoList:
    """A data service answering a lookup by email with 404 (a list has no "not found")."""

    async def request(self, method: str, path: str, **_kwargs: Any) -> UpstreamReply:
        raise NotFound("not found")


async def test_a_lookup_answered_404_is_a_502_not_a_404_of_the_login() -> None:
    with pytest.raises(BadGateway):
        await user_with_email(NoList(), "ann@example.com", None)  # type: ignore[arg-type]  # a stand-in
