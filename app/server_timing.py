"""`SERVER_TIMING=1`: each pipeline answer carries a `Server-Timing` header (W3C Server Timing)
with the time each step took, e.g. ``step-1-auth;dur=0.42, step-2-cache;dur=0.10``.

Independent of tracing, and decided once when the app is built: with the variable unset,
the step wrappers are the plain ones (app/pipeline/build.py) and no signal is registered.

Each entry is the step's own time in milliseconds: the time of the steps after it is
subtracted, so the entries add up to the pipeline's time instead of nesting. A step that
never ran (a cache hit ends the chain before `data-fetch`) has no entry; the rules gate
(body validation and `check_request` hooks) is the entry named ``rules``. The header tells
anyone who can call the API how long each step took (a cache hit, a password check):
turn it on where that is acceptable, e.g. behind an ingress that strips it for the public.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Final

from aiohttp import web

HEADER: Final = "Server-Timing"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_NOT_TOKEN: Final = re.compile(r"[^A-Za-z0-9!#$%&'*+.^_`|~-]")

server_timing_key = web.AppKey("server_timing", bool)
# (position in the chain, entry name, seconds from entering that step to leaving it)
_timings_key = web.RequestKey("server_timing", list[tuple[int, str, float]])


def server_timing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `SERVER_TIMING` asks for the header (``1``, ``true``, ``yes``, ``on``)."""
    value = (os.environ if environ is None else environ).get("SERVER_TIMING", "")
    return value.strip().lower() in _TRUE


def setup_server_timing(app: web.Application) -> None:
    """Read `SERVER_TIMING` once; when on, step wrappers record and answers carry the header."""
    enabled = server_timing_requested()
    app[server_timing_key] = enabled
    if enabled:
        app.on_response_prepare.append(_add_header)


def server_timing_on(app: web.Application) -> bool:
    """Whether `setup_server_timing` turned the header on for `app` (off for apps it never saw)."""
    return app.get(server_timing_key, False)


def entry_name(label: str) -> str:
    """A step label (``1:auth``, ``rules``) as a Server-Timing metric name (``step-1-auth``)."""
    name = f"step-{label.replace(':', '-')}" if label[:1].isdigit() else label
    return _NOT_TOKEN.sub("-", name)


def record(request: web.Request, position: int, name: str, seconds: float) -> None:
    """Note that the step at `position` took `seconds`, the steps after it included."""
    timings = request.get(_timings_key)
    if timings is None:
        timings = request[_timings_key] = []
    timings.append((position, name, seconds))


def header_value(timings: list[tuple[int, str, float]]) -> str:
    """Each step's own time, in chain order: its time less the next step's (chains are linear)."""
    names: dict[int, str] = {}
    spent: defaultdict[int, float] = defaultdict(float)
    for position, name, seconds in timings:
        names[position] = name
        spent[position] += seconds  # a step that called the rest twice (a retry) ran it twice
    entries = []
    for position in sorted(names):
        own = max(spent[position] - spent.get(position + 1, 0.0), 0.0)
        entries.append(f"{names[position]};dur={own * 1000:.2f}")
    return ", ".join(entries)


async def _add_header(request: web.Request, response: web.StreamResponse) -> None:
    timings = request.get(_timings_key)
    if timings:
        response.headers[HEADER] = header_value(timings)
