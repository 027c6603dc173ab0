"""Announcing what the users plugin saves outside a pipeline (the start-up admin,
`turnstile create-admin`): the same events a pipeline's `event-emit` publishes for the same
change (contract §9), with the public user as data."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import pluggy

from app import Event, Publisher, call_chain, has_implementations, models_key, plugin_manager_key
from plugins.users.models import PUBLIC_FIELDS
from plugins.users.rules import public_user

log = logging.getLogger("turnstile.admin")

# A "confirmed" event was taken by the exchange, not necessarily by a queue: an unroutable one is
# confirmed too (and warned about on its own line), so this line does not say "delivered".
_WHAT_BECAME: Final = {
    "confirmed": "taken by the broker",
    "outboxed": "kept in the outbox until the broker is back",
    "logged": "written to the events log (no broker)",
}

Announce = Callable[[str, Any], Awaitable[None]]
"""Publishes the event of a saved change: its type and the data service's answer (the stored user)."""


def announcer(publisher: Publisher, app: Any, origin: str) -> Announce:
    """`Announce` through `publisher`, with the public user (the app's User model, which plugins
    may extend) as data. `origin` names what made the change in the log line; the events'
    request id is fresh, and logged with it."""
    user_model = (app.get(models_key) or {}).get("User")
    fields = PUBLIC_FIELDS if user_model is None else frozenset(field.name for field in attrs.fields(user_model))
    request_id = secrets.token_hex(16)
    pm: pluggy.PluginManager | None = app.get(plugin_manager_key)
    enrichers = pm.hook.enrich_event if pm is not None and has_implementations(pm.hook.enrich_event) else None

    async def announce(event_type: str, record: Any) -> None:
        if not isinstance(record, dict) or "id" not in record:
            log.warning("%s: the data service answered the write without the user; no %s event", origin, event_type)
            return
        event = Event.create(event_type, public_user(record, fields), request_id)
        if enrichers is not None:  # as event-emit's events are (no request, no pipeline: the hook says None)
            enriched = await _enriched(enrichers, event, origin)
            if enriched is None:
                log.info("%s: %s event of user %s suppressed by an enrich_event hook", origin, event_type,
                         record["id"], extra={"request_id": request_id})
                return
            event = enriched
        outcome = await publisher.publish(event)
        log.info("%s: %s event of user %s %s", origin, event_type, record["id"], _WHAT_BECAME[outcome],
                 extra={"request_id": request_id})

    return announce


async def _enriched(hook: pluggy.HookCaller, event: Event, origin: str) -> Event | None:
    """The event as the `enrich_event` hooks leave it; None when one suppresses it. A hook that
    fails, or makes no event of it, leaves it as it was: the change is saved, it must be heard of."""
    try:
        body = await call_chain(hook, "event", event.to_dict(), expect=dict, request=None, pipeline=None)
        if body is False:
            return None
        enriched = Event.from_dict(body)
    except Exception:
        log.exception("%s: an enrich_event hook failed on the %s event; published without its enrichment",
                      origin, event.type)
        return event
    if (enriched.id, enriched.type) != (event.id, event.type):
        log.error("%s: an enrich_event hook changed the event's id or type (%r to %r); published without its "
                  "enrichment", origin, event.type, enriched.type)
        return event
    return enriched
