"""The event-emit step's settings."""

from __future__ import annotations

import re

import attrs

_ROUTING_KEY = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$")


def _routing_key(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    if not _ROUTING_KEY.match(value):
        msg = f"event must be a dotted routing key such as 'user.created', got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class EventEmitConfig:
    """`{ use = "event-emit", event = "user.created" }`

    event: the event type, also its routing key on the topic exchange.
    After the rest of the pipeline answered 2xx, the event is built from the response's data
    (the public object the data-fetch step answered with) or, when the response has no body
    (a 204), from the route parameters (e.g. ``{"id": 7}``), enriched or suppressed by the
    `enrich_event` hooks, and published; the request waits for the broker's confirm only up
    to a short deadline (EVENT_CONFIRM_DEADLINE_S), then the event waits in the outbox.
    """

    event: str = attrs.field(validator=_routing_key)
