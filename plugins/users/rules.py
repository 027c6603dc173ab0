"""The users plugin's business rules as plain functions, so each is tested on its own."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from app import Actor, Forbidden
from plugins.users.models import PUBLIC_FIELDS

DEFAULT_ROLES: Final = ("user",)
ADMIN_ONLY_FIELDS: Final = ("roles", "is_active")
# Pipelines are told apart by their body model, not by their routes.
REGISTER_BODIES: Final = frozenset({"UserRegister"})
CREATE_BODIES: Final = frozenset({"UserRegister", "UserCreate"})
ADMIN_FIELD_BODIES: Final = frozenset({"UserCreate", "UserPatch"})


def normalise_email(email: str) -> str:
    """The one spelling of an email address (contract §4): NFKC-normalised, trimmed, lower-cased.

    Every place that stores, looks up or counts by an email uses this, so look-alikes
    (full-width letters, an ideographic space around it) name one account. NFKC
    comes first because it is what makes full-width letters ASCII capitals and an
    ideographic space a plain one, for `strip` and `lower` to handle after it; in that
    order the result is stable (normalising it again changes nothing), which
    lower-casing before NFKC is not.
    """
    return unicodedata.normalize("NFKC", email).strip().lower()


def with_normalised_email(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The body with its `email` normalised (`normalise_email`), or None when there is nothing to do."""
    email = body.get("email")
    if not isinstance(email, str) or email == normalise_email(email):
        return None
    return {**body, "email": normalise_email(email)}


def check_admin_fields(body_model: str | None, actor: Actor | None, body: Mapping[str, Any] | None) -> None:
    """Only an admin may set `roles` or `is_active`. Raises Forbidden."""
    if body_model not in ADMIN_FIELD_BODIES or body is None:
        return
    sent = [name for name in ADMIN_ONLY_FIELDS if name in body]
    if sent and (actor is None or not actor.is_admin):
        msg = f"Only an admin may set {' and '.join(sent)}."
        raise Forbidden(msg)


def with_defaults(body_model: str | None, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A new user's defaults; a self-registered user is always a plain, active user."""
    out = dict(payload)
    if body_model not in CREATE_BODIES:
        return out
    out.setdefault("full_name", None)
    if body_model in REGISTER_BODIES or out.get("roles") is None:
        out["roles"] = list(DEFAULT_ROLES)
    if body_model in REGISTER_BODIES or out.get("is_active") is None:
        out["is_active"] = True
    return out


def looks_like_user(data: Mapping[str, Any]) -> bool:
    return "password_hash" in data or ("id" in data and "email" in data)


def public_user(record: Mapping[str, Any], fields: frozenset[str] = PUBLIC_FIELDS) -> dict[str, Any]:
    """Only the fields of the public User shape (`fields`: the registered User model's, which
    plugins may extend): never `password_hash`, nor anything else."""
    return {key: value for key, value in record.items() if key in fields}


def public_data(data: Any, fields: frozenset[str] = PUBLIC_FIELDS) -> Any:
    """`data` with every user record in it (one, or each of a page's ``items``) made public."""
    if not isinstance(data, dict):
        return data
    items = data.get("items")
    if isinstance(items, list):
        return {
            **data,
            "items": [
                public_user(item, fields) if isinstance(item, dict) and looks_like_user(item) else item
                for item in items
            ],
        }
    if looks_like_user(data):
        return public_user(data, fields)
    return data
