"""The one cattrs Converter: strict scalars, unknown keys refused, errors as (path, message).

cattrs is lenient by default (``5`` structures into ``"5"`` for a ``str`` field); settings
in pipelines.toml are typed, so the scalar hooks here accept only their own type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

Path = tuple[str | int, ...]

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _strict(kind: type[Any]) -> Any:
    def structure(value: Any, _type: Any) -> Any:
        # bool is an int in Python; TOML keeps them apart and so do we.
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            msg = f"expected {_TYPE_NAMES[kind]}, got {value!r}"
            raise TypeError(msg)
        return value

    return structure


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, float, bool):
        converter.register_structure_hook(kind, _strict(kind))
    return converter


converter = make_converter()


def iter_errors(exc: BaseException, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Flatten a cattrs validation error into (path, message) pairs, one per problem."""
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield (*path, key), f"unknown setting {key!r}"
        return
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                yield from iter_errors(inner, (*path, note.name))
            elif isinstance(note, IterableValidationNote):
                yield from iter_errors(inner, (*path, note.index))
        for inner in without:
            yield from iter_errors(inner, path)
        return
    if isinstance(exc, KeyError):
        yield path, "required setting missing"
        return
    yield path, str(exc)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def structure_errors(value: Any, cls: type[Any]) -> list[str]:
    """What is wrong with structuring `value` into `cls`, one ``path: message`` per problem
    (the message alone where it has no path: attrs validators run in ``__init__`` and name their
    field themselves); [] when it structures."""
    try:
        converter.structure(value, cls)
    except Exception as exc:  # cattrs raises groups of anything the hooks and validators raise
        return [f"{format_path(path)}: {message}" if path else message for path, message in iter_errors(exc)]
    return []
