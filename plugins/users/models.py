"""The user models: request bodies validated against their OpenAPI schema, and the public shapes.

`User` is the only user shape that leaves the service (contract §4): no password, no hash.
"""

# schema_field returns an attrs field definition, not a shared mutable default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime
from typing import Any, Final

import attrs

from app import schema_field

# An address as mail servers take it, checked after NFKC normalisation, trimming and lower-casing:
# - a dot-atom local part (RFC 5322 §3.2.3): letters, digits and ! # $ % & ' * + / = ? ^ _ ` { | } ~ -
#   between single dots, or any character past ASCII (RFC 6531). None of the specials ( ) < > [ ] : ; , " \
#   nor a space: the address is written into a mail's To header, where "a,b@evil.example" names two
#   mailboxes and "(x)b@evil.example" one that is not the address;
# - domain labels of letters, digits, hyphens or characters past ASCII, with at least one dot;
# - RFC 5321's lengths, which mail servers enforce: a local part of at most 64 characters, labels of
#   at most 63 (an address past them could be stored, but never mailed);
# - no invisible character (soft hyphen, zero-width ones, bidirectional controls, a byte-order mark)
#   nor a space of another script: NFKC keeps them, so "admin\u200b@example.com" would be an account
#   that shows as another. This list is what a JavaScript pattern can say; the rule that gives an
#   account its address refuses every such character by its Unicode category too
#   (rules.email_address_problem).
# Characters past the Basic Multilingual Plane (emoji) are refused: the pattern is also the OpenAPI
# document's, in JavaScript's syntax, where they are two code units.
_UNSEEN: Final = (
    r"\u00a0\u00ad\u034f\u061c\u115f\u1160\u1680\u17b4\u17b5\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f"
    r"\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
_LOCAL: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\ud7ff\ue000-\ufffd-]"
_LABEL: Final = r"[A-Za-z0-9\u00a0-\ud7ff\ue000-\ufffd-]{1,63}"
EMAIL_PATTERN: Final = (
    rf"^(?!.*[{_UNSEEN}])(?=[^@]{{1,64}}@){_LOCAL}+(\.{_LOCAL}+)*@{_LABEL}(\.{_LABEL})+$"
)
EMAIL_MAX: Final = 254  # RFC 5321's limit on a path, less the angle brackets
PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 128
FULL_NAME_MAX: Final = 200
# No control characters (C0, DEL, C1), Unicode line and paragraph separators, nor bidirectional
# embeddings, overrides or isolates: a NUL or a line break in a name breaks the databases, mails
# and log lines it ends up in (PostgreSQL refuses NUL in text; U+2028 and U+0085 end a line for
# Python's splitlines, cutting an event of events.jsonl in two), an override makes the text
# after it read backwards ("invoice\u202egnp.exe"), and none is part of a name; nor a zero-width
# space, a byte-order mark or a noncharacter (the joiners U+200C and U+200D stay: Persian and
# Indic names, and emoji, need them).
FULL_NAME_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]*$"
ROLE_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,63}$"
ROLE_MAX: Final = 64  # characters of one role, as ROLE_PATTERN says
ROLES_MAX: Final = 64  # roles one user may hold


def _email(**kwargs: Any) -> Any:
    return schema_field(
        description="Email address; NFKC-normalised, trimmed and lower-cased.",
        pattern=EMAIL_PATTERN,
        maxLength=EMAIL_MAX,
        example="ada@example.com",
        **kwargs,
    )


def _password(**kwargs: Any) -> Any:
    return schema_field(
        description=f"Password, {PASSWORD_MIN} to {PASSWORD_MAX} characters; stored only as an argon2id hash.",
        minLength=PASSWORD_MIN,
        maxLength=PASSWORD_MAX,
        **kwargs,
    )


def _full_name(**kwargs: Any) -> Any:
    return schema_field(
        description=f"Display name, at most {FULL_NAME_MAX} characters, no control characters.",
        maxLength=FULL_NAME_MAX, pattern=FULL_NAME_PATTERN, **kwargs,
    )


def _roles(**kwargs: Any) -> Any:
    return schema_field(
        description='Roles; "admin" may manage every user. Admins only may set them.',
        example=["user"],
        items={"type": "string", "pattern": ROLE_PATTERN, "maxLength": ROLE_MAX},
        maxItems=ROLES_MAX,
        uniqueItems=True,
        **kwargs,
    )


def _is_active(**kwargs: Any) -> Any:
    return schema_field(description="A disabled user cannot log in. Admins only may set it.", **kwargs)


@attrs.frozen(kw_only=True)
class User:
    """A user as the service shows it (never with a password or its hash)."""

    id: int = schema_field(description="The user's id.", example=1)
    email: str = schema_field(description="Email address, lower-case.", example="ada@example.com")
    full_name: str | None = schema_field(description="Display name.")
    is_active: bool = schema_field(description="Whether the user may log in.")
    is_verified: bool = schema_field(
        description="Whether the user proved they own `email` by following a mailed link; "
                    "false for a new user and again after an email change.")
    roles: list[str] = schema_field(description="Roles.", example=["user"])
    created_at: datetime.datetime = schema_field(description="When the user was created (RFC 3339).")
    updated_at: datetime.datetime = schema_field(description="When the user last changed (RFC 3339).")


PUBLIC_FIELDS: Final = frozenset(field.name for field in attrs.fields(User))


@attrs.frozen(kw_only=True)
class UserPage:
    """One page of users."""

    items: list[User] = schema_field(description="The users on this page.")
    total: int = schema_field(description="How many users there are in all.")
    limit: int = schema_field(description="The page size asked for (a data service may cap it: the next "
                                          "page starts at offset + the number of items received).")
    offset: int = schema_field(description="How many users come before this page.")


@attrs.frozen(kw_only=True)
class UserRegister:
    """Self-registration: a new user with roles ["user"], active."""

    email: str = _email()
    password: str = _password()
    full_name: str | None = _full_name(default=None)


@attrs.frozen(kw_only=True)
class UserCreate:
    """A user created by an admin."""

    email: str = _email()
    password: str = _password()
    full_name: str | None = _full_name(default=None)
    roles: list[str] | None = _roles(default=None, nullable=False)
    is_active: bool | None = _is_active(default=None, nullable=False)


@attrs.frozen(kw_only=True)
class UserPatch:
    """A change to a user: only the fields sent change."""

    email: str | None = _email(default=None, nullable=False)
    password: str | None = _password(default=None, nullable=False)
    current_password: str | None = schema_field(
        default=None, nullable=False, minLength=1, maxLength=PASSWORD_MAX,
        description="The caller's current password: required when users change their own email or password.",
    )
    full_name: str | None = _full_name(default=None)
    roles: list[str] | None = _roles(default=None, nullable=False)
    is_active: bool | None = _is_active(default=None, nullable=False)


@attrs.frozen(kw_only=True)
class Pagination:
    """Query parameters of a list."""

    limit: int = schema_field(default=50, description="Page size, 1-500 (default 50).", minimum=1, maximum=500)
    # The bound is SQLite's largest row id: any offset the data service can take.
    offset: int = schema_field(default=0, description="Users to skip (default 0).", minimum=0, maximum=2**63 - 1)


MODELS: Final = (User, UserPage, UserRegister, UserCreate, UserPatch, Pagination)
