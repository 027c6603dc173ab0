"""The users plugin's business rules as plain functions, so each is tested on its own."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import idna

from app import Actor, FieldError, Forbidden, ValidationFailed
from plugins.users.models import PASSWORD_MAX, PASSWORD_MIN, PUBLIC_FIELDS
from plugins.users.scripts import mixed_part

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


# Bodies that give an account its address: the rule below applies to them (a login or a lookup
# with such an address finds nothing, and an account made before the rule can still sign in).
EMAIL_SETTING_BODIES: Final = frozenset({"UserRegister", "UserCreate", "UserPatch"})
# Bodies that set a password: the accounts plugin's reset too (its route's body model).
PASSWORD_SETTING_BODIES: Final = frozenset({"UserRegister", "UserCreate", "UserPatch", "ResetPasswordRequest"})
# Unicode categories no character of an address may have: controls, format characters (zero-width,
# bidirectional, Mongolian variation selectors), private use, surrogates, unassigned code points,
# separators. NFKC keeps them, and each made "admin<it>@example.com" an account that reads as
# another (a hand-written list of such characters missed most of them).
_UNSEEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zs", "Zl", "Zp"})
# Blank characters of other categories (Hangul fillers, Khmer inherent vowels, the braille blank).
_BLANKS: Final = frozenset("\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
# Encoded-word syntax (RFC 2047): a mail program decodes "=?utf-8?q?admin?=@example.com" in a To
# header as admin@example.com, so the mail of one account went to another's mailbox.
LOCAL_PART_MAX_OCTETS: Final = 64
DNS_LABEL_MAX_OCTETS: Final = 63  # RFC 1035
DNS_NAME_MAX_OCTETS: Final = 253  # RFC 1035's 255, less the length octets at each end
IDEOGRAPHIC_FULL_STOP: Final = "\u3002"  # NFKC makes the half-width one (U+FF61) this one
IDNA_PREFIX: Final = "xn--"  # an internationalised label's ASCII form (RFC 5890)
_ENCODED_WORD: Final = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def email_address_problem(email: str) -> str | None:
    """Why `email` (normalised) cannot be an account's address, or None: a character no one sees,
    a combining mark on a plain ASCII letter (a look-alike NFKC leaves apart), an encoded word, or
    a local part over RFC 5321's 64 octets (the pattern counts characters: 64 of "é" are 128
    octets, an address that could be stored but never mailed), or a part that mixes scripts
    (`plugins.users.scripts`: a Cyrillic a, U+0430, among Latin letters)."""
    if _ENCODED_WORD.search(email):
        return "an encoded word (=?charset?q?...?=) is no part of an address"
    if len(email.rpartition("@")[0].encode()) > LOCAL_PART_MAX_OCTETS:
        return f"the part before @ is longer than {LOCAL_PART_MAX_OCTETS} octets (UTF-8)"
    previous = ""
    for char in email:
        category = unicodedata.category(char)
        if (category in _UNSEEN_CATEGORIES or char in _BLANKS
                or (category == "Mn" and previous.isascii() and previous.isalnum())):
            return f"the character U+{ord(char):04X} is invisible, unassigned or of private use here"
        previous = char
    domain_problem = _domain_problem(email.rpartition("@")[2])
    if domain_problem is not None:
        return domain_problem
    mixed = mixed_part(email)
    if mixed is not None:
        return f"{mixed!r} mixes letters of different scripts (a look-alike of another address)"
    return None


def _domain_problem(domain: str) -> str | None:
    """Why `domain` cannot be mailed to as written: an ideographic full stop (mail programs map it
    to a dot, IDNA's UTS #46, so "ann@a\u3002b.com" would be another account whose mails go to
    ann@a.b.com), a label or a whole too long for DNS once encoded (IDNA's xn-- form), or a label
    `_label_problem` refuses."""
    if IDEOGRAPHIC_FULL_STOP in domain:
        return "the ideographic full stop (U+3002) is read as a dot: write the dot"
    encoded = [label if label.isascii() else f"xn--{label.encode('punycode').decode()}" for label in domain.split(".")]
    if any(len(label) > DNS_LABEL_MAX_OCTETS for label in encoded):
        return f"a label of the domain is longer than {DNS_LABEL_MAX_OCTETS} octets once encoded for DNS (IDNA)"
    if len(".".join(encoded)) > DNS_NAME_MAX_OCTETS:
        return f"the domain is longer than {DNS_NAME_MAX_OCTETS} octets once encoded for DNS (IDNA)"
    for label in domain.split("."):
        problem = _label_problem(label)
        if problem is not None:
            return problem
    return None


def _label_problem(label: str) -> str | None:
    """An `xn--` label (its own letters are what the other rules read: a Cyrillic a, U+0430, in a
    Latin name shows in the letters, not in "xn--pple-43d"; and one spelling is one account), a
    label past ASCII that IDNA 2008 does not allow (a Unicode hyphen or minus: "my\u2010site"
    reads as "my-site"), or one that begins or ends with a hyphen (RFC 1035)."""
    if label.startswith(IDNA_PREFIX):
        try:
            decoded = idna.decode(label)
        except idna.IDNAError:
            return f"{label!r} is no valid IDNA label"
        return f"write the domain in its own letters ({decoded!r}), not its IDNA form ({label!r})"
    if label.startswith("-") or label.endswith("-"):
        return f"the domain's label {label!r} begins or ends with a hyphen"
    if not label.isascii():
        try:
            idna.encode(label)
        except idna.IDNAError as exc:
            return f"the domain's label {label!r} is no valid internationalised label: {exc}"
    return None


def check_password_length(body_model: str | None, body: Mapping[str, Any] | None) -> None:
    """A new password has PASSWORD_MIN to PASSWORD_MAX characters as it is hashed (NFC: "e" and a
    combining accent are one character, "é"; U+0958 is two; the schema counts code points as
    sent). Only where a password is set: a login compares whatever it is given, so an account
    made before this rule still signs in. Raises ValidationFailed."""
    password = body.get("password") if body_model in PASSWORD_SETTING_BODIES and body is not None else None
    if not isinstance(password, str):
        return
    length = len(unicodedata.normalize("NFC", password))
    if not PASSWORD_MIN <= length <= PASSWORD_MAX:
        problem = f"has {length} characters once normalised (NFC): {PASSWORD_MIN} to {PASSWORD_MAX} are taken"
        raise ValidationFailed("The password is not valid.", errors=[FieldError(("body", "password"), problem)])


def check_email_address(body_model: str | None, body: Mapping[str, Any] | None) -> None:
    """An address given to an account has nothing `email_address_problem` refuses.

    Raises ValidationFailed (422, the field named)."""
    if body_model not in EMAIL_SETTING_BODIES or body is None:
        return
    email = body.get("email")
    problem = email_address_problem(email) if isinstance(email, str) else None
    if problem is not None:
        raise ValidationFailed("The email address is not valid.", errors=[FieldError(("body", "email"), problem)])


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
