"""``{placeholder}`` templates (`call`, cache `key`), parsed once at build, filled per request.

A template names route parameters and ``{actor}`` (the authenticated user's id); in a
subscription it names fields of the consumed event's ``data``. Only bare names are allowed:
no attribute access, indexing, format specs or conversions, so filling one is a join.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, Final, final
from urllib.parse import quote

import attrs
from aiohttp import web

from app.converter import converter
from app.errors import InternalError
from app.keys import actor_key
from app.pipeline.types import Actor

ACTOR: Final = "actor"


def parse_template(text: str) -> tuple[tuple[str, str | None], ...]:
    """``(literal, name or None)`` pairs. Raises ValueError for anything but bare ``{name}``s."""
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None and (not name.isidentifier() or spec or conversion):
            msg = f"placeholder {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} " \
                  "must be a bare name such as {id}"
            raise ValueError(msg)
        parts.append((literal, name))
    return tuple(parts)


def template_placeholders(template: str) -> list[str]:
    """The base names a ``{placeholder}`` template uses (``{actor.id}`` → ``actor``)."""
    names = []
    for _literal, field, _spec, _conv in string.Formatter().parse(template):
        if field is not None:
            names.append(re.split(r"[.\[]", field, maxsplit=1)[0])
    return names


def check_template(_inst: object, attribute: Any, value: str) -> None:
    """An attrs validator: `value` parses as a template."""
    try:
        parse_template(value)
    except ValueError as exc:
        msg = f"{attribute.name}: bad template {value!r}: {exc}"
        raise ValueError(msg) from exc


@final
class Template:
    """A parsed template. `quote`: percent-encode route parameter values (for URL paths).

    Parameters listed in `safe` (``{id:int}`` route params: digits only) skip the encoding.
    """

    __slots__ = ("_parts", "_static", "text")

    def __init__(self, text: str, *, quote: bool = False, safe: frozenset[str] = frozenset()) -> None:
        self.text = text
        self._parts = tuple(
            (literal, name, quote and name is not None and name != ACTOR and name not in safe)
            for literal, name in parse_template(text)
        )
        self._static = text if all(name is None for _, name, _ in self._parts) else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name, _ in self._parts if name is not None)

    def for_request(self, request: web.Request) -> str:
        if self._static is not None:
            return self._static
        match_info = request.match_info
        out: list[str] = []
        for literal, name, encode in self._parts:
            out.append(literal)
            if name is None:
                continue
            if name == ACTOR:
                out.append(str(_actor_id(request)))
            else:
                value = match_info[name]
                out.append(quote(value, safe="") if encode else value)
        return "".join(out)

    def for_data(self, data: Mapping[str, Any]) -> str:
        """Filled from an event's ``data``. Raises KeyError when a field is missing."""
        if self._static is not None:
            return self._static
        out: list[str] = []
        for literal, name, _encode in self._parts:
            out.append(literal)
            if name is not None:
                out.append(str(data[name]))
        return "".join(out)


def _structure_template(value: Any, _type: Any) -> Template:
    # A config field may be declared as a Template (parsed at load) as well as a str.
    if not isinstance(value, str):
        msg = f"expected a template string such as \"user:{{id}}\", got {value!r}"
        raise TypeError(msg)
    try:
        return Template(value)
    except ValueError as exc:
        msg = f"bad template {value!r}: {exc}"
        raise ValueError(msg) from exc


converter.register_structure_hook(Template, _structure_template)


def _actor_id(request: web.Request) -> int:
    actor: Actor | None = request.get(actor_key)
    if actor is None:
        # A pipeline naming {actor} without an auth step before it: a configuration bug.
        msg = "This route names the caller, but no caller was authenticated."
        raise InternalError(msg)
    return actor.user_id


def template_settings(config: Any) -> list[tuple[str, str]]:
    """(setting, template text) of each template setting of a step's config (`template_field`),
    a list setting's templates one by one."""
    found: list[tuple[str, str]] = []
    for field in attrs.fields(type(config)):
        if not field.metadata.get("template"):
            continue
        value = getattr(config, field.name)
        values = [value] if isinstance(value, str | Template) else list(value)
        found.extend((field.name, v.text if isinstance(v, Template) else v)
                     for v in values if isinstance(v, str | Template))
    return found
