"""The data service's user records as the steps that act on them read them (contract §7).

A login, a refresh or a mail link decides on a record's `is_active`, `roles` and password
hash. A record that lacks one, or has it of the wrong type (a version mismatch, a proxy's
error page turned JSON), is the data service's fault: a 502. Read as it came, a missing
`is_active` made a login "disabled" and a refresh end the session for good.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from app import BadGateway, DataService, NotFound, parse_rfc3339
from plugins.users.rules import normalise_email

log = logging.getLogger("turnstile.users")

UNUSABLE = "The data service gave an answer this service could not use."


def user_record(data: Any, *, with_hash: bool = False) -> dict[str, Any]:
    """`data` when it is a user record with what the auth steps read, else BadGateway."""
    problem = _problem(data, with_hash=with_hash)
    if problem is not None:
        log.warning("the data service's user record does not fit: %s", problem)  # the field, never its value
        raise BadGateway(UNUSABLE)
    return data  # type: ignore[no-any-return]  # checked above


def user_page(data: Any) -> list[Any]:
    """The items of a page of users (`{"items": [...]}`), else BadGateway."""
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        log.warning("the data service's page of users does not fit: no items list")
        raise BadGateway(UNUSABLE)
    return items


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_roles(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(role, str) for role in value)


# What the auth steps read of a record: each field, its test, and what it must be.
_FIELDS: Final = (
    ("id", _is_int, "an integer"),
    ("email", lambda value: isinstance(value, str), "a string"),
    ("is_active", lambda value: isinstance(value, bool), "true or false"),
    ("roles", _is_roles, "a list of strings"),
)
def _is_moment_or_null(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        parse_rfc3339(value)
    except ValueError:
        return False
    return True


# What a login, a refresh or a mail link reads besides: the stored record whole (contract §7).
_STORED: Final = (
    ("password_hash", lambda value: isinstance(value, str), "a string"),
    ("is_verified", lambda value: isinstance(value, bool), "true or false"),
    ("sessions_revoked_at", _is_moment_or_null, "an RFC 3339 time or null"),
)


def _problem(data: Any, *, with_hash: bool) -> str | None:
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    for name, fits, expected in (*_FIELDS, *_STORED) if with_hash else _FIELDS:
        # `in`: a field left out is a problem, and so is a null where null is no value
        if name not in data or not fits(data[name]):
            return f"{name}: expected {expected}"
    return None


# As many as one page of a data service that filters `?email=` loosely (a "contains" match)
# could put before the one account that has exactly that address.
LOOKUP_PAGE: Final = 100


async def user_with_email(
    data: DataService, email: str, request_id: str | None, *, with_hash: bool = True
) -> dict[str, Any] | None:
    """The stored record of the user whose address is `email` (already normalised), or None.

    Contract §7 says the list takes `?email=`, not that it matches exactly: a record is taken
    only when its own address, normalised, is `email`. Taking the first item of a looser match
    mailed one user's reset link to another, and let login attempts on one account spread over
    "different" addresses, around the per-email limit.
    """
    try:
        reply = await data.request("GET", "/api/v1/users", params={"email": email, "limit": LOOKUP_PAGE},
                                   request_id=request_id)
    except NotFound:  # a list has no "not found" (contract §7: 200 {items, total}), an empty one at most
        log.warning("the data service answered a lookup by email with 404")
        raise BadGateway(UNUSABLE) from None
    for item in user_page(reply.data):
        email_of = item.get("email") if isinstance(item, dict) else None
        if not isinstance(email_of, str):  # a record without an address is no "unknown email": a 502
            user_record(item, with_hash=with_hash)
        elif normalise_email(email_of) == email:
            return user_record(item, with_hash=with_hash)
    return None
