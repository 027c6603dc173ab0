"""The checks a JSON request body gets besides its model: how many objects and arrays it may
hold, how deep they may nest, and no member named twice in one object.

The bound on objects and arrays is about what parsing costs. orjson builds every object and array of a body, and
a 1 MiB body of nothing but `{}` or `[[[…]]]` is 350,000 to 520,000 of them: 20 to 100 ms of the
event loop before a model could refuse it, longer to free, and a client could send one after
another. So the objects and arrays are counted first, as the body's `{` and `[` characters
(two `bytes.count` calls: ~0.2 ms for 1 MiB, nothing for a small body), and a body over the
bound is a 413 without being parsed. Brackets inside strings count too: exact enough for a
bound, and no parse needed to apply it.

Nesting is bounded too (64 levels, as System.Text.Json's default): the validators and the error
messages recurse through a value, and a body nested a thousand levels deep would meet Python's
recursion limit there.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final

from app.errors import FieldError, MalformedRequest, PayloadTooLarge, ValidationFailed

# Objects and arrays a JSON body may hold, unless its model says otherwise (`max_json_containers`).
# No body of the built-in routes holds more than a few; a plugin's bulk route may raise it.
MAX_JSON_CONTAINERS: Final = 10_000

# How deep objects and arrays may nest in a JSON body (the body itself is level 1).
MAX_JSON_DEPTH: Final = 64

# The most members a body may have for a repeated one to be named at its path (see below).
LOCATED_MEMBERS: Final = 1_000


def refuse_too_many_containers(raw: bytes, limit: int) -> int:
    """The `{` and `[` characters of `raw` (strings included): at least as many as the objects
    and arrays it holds. A 413 when they are more than `limit`."""
    count = raw.count(b"{") + raw.count(b"[")
    if count > limit:
        msg = (f"The request body holds more than {limit} JSON objects and arrays "
               f"(counted as its '{{' and '[' characters); this route reads at most {limit}.")
        raise PayloadTooLarge(msg)
    return count


def check_shape(raw: bytes, value: Any, containers: int) -> None:
    """A 400 when `value` (parsed from the JSON text `raw`, which has `containers` `{` and `[`
    characters: `refuse_too_many_containers` counted them) nests deeper than MAX_JSON_DEPTH;
    a 422 naming each member sent twice in one object, as for a form field or a query
    parameter: never resolved by order, since a proxy or WAF in front that keeps the first one
    would check another value than the one acted on.

    orjson, which parsed `value`, keeps the last of repeated members and cannot report them.
    Members are counted instead: when `raw` writes no more of them than `value` holds, nothing
    was repeated. Its `:` characters are an upper bound that costs nothing; when strings hold
    some, the `:` outside strings are counted exactly. Only when that count is higher does the
    stdlib's parser read the body a second time to find where, and only in a body of at most
    `LOCATED_MEMBERS` members: it costs ~1 µs a member, 100 ms for a hostile body of 80,000. A
    larger body with a repeat gets one error at its root.
    """
    colons = raw.count(b":")
    if colons == 0 and containers <= MAX_JSON_DEPTH:
        return  # no member to repeat, too few objects and arrays to nest too deep: no walk
    parsed, depth = _members_and_depth(value, containers)
    if depth > MAX_JSON_DEPTH:
        msg = f"The request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep."
        raise MalformedRequest(msg)
    if colons == parsed:
        return
    written = _members_written(raw)
    if written == parsed:
        return
    if written > LOCATED_MEMBERS:
        msg = "The request body is not valid."
        raise ValidationFailed(msg, errors=[FieldError(("body",), "has a member sent more than once")])
    _locate_repeats(raw)


def _locate_repeats(raw: bytes) -> None:
    """The 422 naming each repeated member of `raw` at its path."""
    repeats_seen = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeats_seen
        members = dict(items)
        if len(members) == len(items):
            return members
        repeats_seen = True
        marked = _RepeatedNames(members)
        marked.repeated = tuple(name for name, times in Counter(name for name, _ in items).items() if times > 1)
        return marked

    try:
        reread = json.loads(raw, object_pairs_hook=pairs)
    except ValueError:  # none known: the stdlib takes all orjson does; a 400 all the same, never a 500
        msg = "The request body is not valid JSON."
        raise MalformedRequest(msg) from None
    if repeats_seen:
        # Lazily: the problem keeps the first MAX_VALIDATION_ERRORS and stops walking.
        raise ValidationFailed("The request body is not valid.", errors=_repeats_in(reread, ("body",)))


class _RepeatedNames(dict[str, Any]):
    """A JSON object in which the members named `repeated` appear more than once."""

    repeated: tuple[str, ...] = ()


def _members_written(raw: bytes) -> int:
    """The object members written in the valid JSON text `raw`: its `:` outside strings.

    Escaped backslashes go first, then escaped quotes, so the quotes left delimit strings; the
    text between every other pair of them is outside. All C-level bytes operations: ~1 µs for a
    small body, a few ms for 1 MiB of short strings."""
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(text.split(b'"')[0::2]).count(b":")


def _members_and_depth(value: Any, containers: int) -> tuple[int, int]:
    """The members of every object in `value`, and how deep its objects and arrays nest.

    `containers` is an upper bound on the objects and arrays in `value`: once that many are
    found, no item left unvisited can be one, so a long list of strings or numbers is not
    looked through (`{"email": [260,000 strings]}`: 10 ms saved)."""
    members = deepest = found = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        found += 1
        deepest = max(deepest, depth)
        if type(item) is dict:
            members += len(item)
            item = item.values()
        if found + len(pending) < containers:
            pending += [(member, depth + 1) for member in item if type(member) in _CONTAINERS]
    return members, deepest


_CONTAINERS: Final = (dict, list)  # what orjson makes of JSON's objects and arrays, exactly


def _repeats_in(value: Any, loc: tuple[str | int, ...]) -> Iterator[FieldError]:
    if isinstance(value, dict):
        for name in getattr(value, "repeated", ()):
            yield FieldError((*loc, name), "sent more than once")
        for name, member in value.items():
            yield from _repeats_in(member, (*loc, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _repeats_in(item, (*loc, index))
