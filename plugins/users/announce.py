"""Announcing what the users plugin saves outside a pipeline (the start-up admin,
`turnstile create-admin`): the same events a pipeline's `event-emit` publishes for the same
change (contract §9), with the public user as data."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from app import Event, Publisher, models_key
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

    async def announce(event_type: str, record: Any) -> None:
        if not isinstance(record, dict) or "id" not in record:
            log.warning("%s: the data service answered the write without the user; no %s event", origin, event_type)
            return
        outcome = await publisher.publish(Event.create(event_type, public_user(record, fields), request_id))
        log.info("%s: %s event of user %s %s", origin, event_type, record["id"], _WHAT_BECAME[outcome],
                 extra={"request_id": request_id})

    return announce
