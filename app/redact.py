"""Secrets out of what is logged (contract §4, §11): passwords, hashes and tokens become ``***``.

Two nets, because a secret can be recognised by where it sits or by what it looks like:

- by key: a value under a secret name (`SECRET_KEYS`, or a name ending in ``_password``,
  ``_secret`` or ``_token``; case-insensitive, ``-`` read as ``_``), at any depth of dicts,
  lists, tuples, sets, attrs classes, dataclasses and named tuples;
- by shape: an argon2 hash (``$argon2…``), a JWT (``eyJ….….…``) or ``Bearer …`` anywhere in
  a string, and in the ``repr`` of any other object; in those texts too, the value of a
  ``name=value`` or ``'name': value`` pair whose name is a secret one (a raw JSON body, a
  class this module cannot walk).

`Redacted` wraps a value for a log call and does the work only when the line is written, so
a logger that is off pays nothing beyond the wrapper (callers on hot paths check
``isEnabledFor`` first and skip even that).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final, final

import attrs

MASK: Final = "***"

SECRET_KEYS: Final = frozenset({
    "password", "current_password", "new_password", "password_hash", "token", "access_token",
    "refresh_token", "client_secret", "secret", "authorization",
})
_SECRET_SUFFIXES: Final = ("_password", "_secret", "_token")

# Past this depth a value is not shown at all: a trace line is for reading, and this bounds
# the work on self-referencing or very deep structures.
MAX_DEPTH: Final = 8

_SHAPES: Final = re.compile(
    r"\$argon2[a-z]*\$[A-Za-z0-9+/=,$.-]*"  # argon2 PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWT (JOSE header '{"' is "eyJ")
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"  # RFC 6750 credentials
)
# ``name=value`` and ``'name': value`` pairs in a text: a raw JSON body, or the repr of an object
# this module cannot walk.
_PAIRS: Final = re.compile(
    r"""(?P<key>['"]?(?P<name>[A-Za-z_][A-Za-z0-9_-]*)['"]?\s*[:=]\s*)"""
    r"""(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,)}\]>]+)"""
)


def is_secret_key(name: str) -> bool:
    key = name.lower().replace("-", "_")
    return key in SECRET_KEYS or key.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """`text` with every secret-shaped run, and the value of every secret-named pair, as ``***``."""
    return _PAIRS.sub(_mask_pair, _SHAPES.sub(MASK, text))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` safe to print: secret keys and secret-shaped strings masked.

    Containers and records are rebuilt (records as `_Record`, whose repr reads like the
    original's); an object of any other type becomes its ``repr`` with both nets applied.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth >= MAX_DEPTH:
        return _Raw("...")
    return _rebuilt(value, depth + 1)


def _rebuilt(value: Any, depth: int) -> Any:
    # Plain dicts only: an aiohttp Application or Request is a Mapping too, and is shown by
    # its own repr rather than walked.
    if isinstance(value, dict):
        return {key: _masked(key, item, depth) for key, item in value.items()}
    names = _record_fields(value)
    if names is not None:
        fields = {name: _masked(name, getattr(value, name, None), depth) for name in names}
        return _Record(type(value).__name__, fields)
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact(item, depth) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, bytes | bytearray | memoryview):
        return _Raw(f"<{len(value)} bytes>")  # raw bodies are not shown: no key to go by
    return _Raw(redact_text(repr(value)))


def _record_fields(value: Any) -> list[str] | None:
    """The field names of an attrs instance, a dataclass instance or a named tuple."""
    if attrs.has(type(value)):
        return [field.name for field in attrs.fields(type(value))]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [field.name for field in dataclasses.fields(value)]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return list(value._fields)
    return None


def _masked(key: object, value: Any, depth: int) -> Any:
    return MASK if isinstance(key, str) and is_secret_key(key) and value is not None else redact(value, depth)


def _mask_pair(match: re.Match[str]) -> str:
    return match["key"] + repr(MASK) if is_secret_key(match["name"]) else match[0]


@final
class _Raw:
    """Text shown as it is (no quotes), e.g. an already redacted repr."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@final
class _Record:
    """An attrs class, dataclass or named tuple, redacted: ``Name(field=value, …)``."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.fields.items())})"


@final
class Redacted:
    """A log argument that is redacted when, and only if, the line is written."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(redact(self.value))

    __str__ = __repr__
