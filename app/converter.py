"""The one cattrs Converter: strict scalars and lists, unknown keys refused, errors as (path, message).

cattrs is lenient by default (``5`` structures into ``"5"`` for a ``str`` field, and ``"team"``
into ``["t", "e", "a", "m"]`` for a ``list[str]`` one, a string being a sequence); settings in
pipelines.toml are typed, so the hooks here accept only their own type.
"""

from __future__ import annotations

import collections.abc
import typing
from collections.abc import Callable, Iterator
from typing import Any

import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
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


# Collection types a setting may be declared with, and the hook cattrs would make for each.
_LISTS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)


def _is_collection(type_: Any) -> bool:
    origin = typing.get_origin(type_)
    if origin is tuple:  # only tuple[X, ...]: a fixed-length tuple is a record, cattrs's own
        args = typing.get_args(type_)
        return len(args) == 2 and args[1] is Ellipsis  # (item type, ...)
    return origin in _LISTS or origin in _SETS


def _collection_hook(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        origin = typing.get_origin(type_)
        inner: Callable[[Any, Any], Any]
        if origin is tuple:
            inner = homogenous_tuple_structure_factory(type_, converter)
        elif origin in _LISTS:
            inner = list_structure_factory(type_, converter)
        else:
            (item,) = typing.get_args(type_)
            make = frozenset if origin in (frozenset, collections.abc.Set) else set

            def inner(value: Any, _type: Any) -> Any:
                return make(converter.structure(v, item) for v in value)

        def structure(value: Any, hinted: Any) -> Any:
            if not isinstance(value, list | tuple | set | frozenset):
                msg = f"expected a list, got {value!r}"
                raise TypeError(msg)
            return inner(value, hinted)

        return structure

    return factory


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, float, bool):
        converter.register_structure_hook(kind, _strict(kind))
    converter.register_structure_hook_factory(_is_collection, _collection_hook(converter))
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
