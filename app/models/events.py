"""Domain events: the one shape Turnstile publishes to RabbitMQ (contract §9).

The body is exactly ``{"id", "type", "occurred_at", "request_id", "data"}``; the AMQP
properties that travel with it come from `Event.amqp_properties` so the publisher, the
outbox replay and the tests agree on them. `Event.headers` carries what travels beside the
body (the W3C trace context when tracing, contract §15).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, final

import attrs
import orjson
from pamqp.commands import Basic

APP_ID: Final = "turnstile"
CONTENT_TYPE: Final = "application/json"
PERSISTENT: Final = 2
REQUEST_ID_HEADER: Final = "x-request-id"
BODY_KEYS: Final = frozenset({"id", "type", "occurred_at", "request_id", "data"})
OUTBOX_HEADERS_KEY: Final = "headers"  # beside the body's keys in an outbox entry, never in a message


class EventDecodeError(ValueError):
    """A message body that is not a Turnstile event."""


def utc_now_rfc3339() -> str:
    """Now, as RFC 3339 in UTC with microseconds and a `Z` suffix."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    """An aware datetime from RFC 3339 text; `Z` and offsets are both accepted."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        msg = f"timestamp without a time zone: {value!r}"
        raise ValueError(msg)
    return parsed


@final
@attrs.frozen(kw_only=True)
class Event:
    """One domain event.

    id: a uuid4, also the AMQP `message_id`, which consumers dedupe by.
    type: the routing key, e.g. `user.created`.
    occurred_at: RFC 3339 UTC text, e.g. `2026-11-28T07:26:00.123456Z`.
    request_id: the `X-Request-ID` of the request that caused it (contract §6).
    data: the payload; for user events the public user object (never a password hash).
    headers: more AMQP headers it is sent with, or arrived with: the trace context
        (`traceparent`, `tracestate`) when tracing is on. Not part of the body, so not part of
        equality; the outbox keeps them beside the body (`to_outbox_json`), so an event sent
        late still continues the trace of the request that made it.
    """

    id: str
    type: str
    occurred_at: str
    request_id: str
    data: dict[str, Any]
    headers: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    @staticmethod
    def new_id() -> str:
        """A fresh event id: a uuid4 in its canonical text."""
        return str(uuid.uuid4())

    @classmethod
    def create(
        cls, type: str, data: dict[str, Any], request_id: str, *, id: str | None = None, occurred_at: str | None = None
    ) -> Event:
        """A new event, with a fresh id unless `id` was chosen before (`new_id`), stamped
        `occurred_at` (when the change was committed: `committed_at_key`) or else now."""
        return cls(
            id=id if id is not None else cls.new_id(),
            type=type,
            occurred_at=occurred_at if occurred_at is not None else utc_now_rfc3339(),
            request_id=request_id,
            data=data,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "request_id": self.request_id,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: object) -> Event:
        """Check the exact body shape and types; raise `EventDecodeError` on anything else."""
        if not isinstance(raw, dict):
            msg = f"an event is a JSON object, not {type(raw).__name__}"
            raise EventDecodeError(msg)
        if set(raw) != BODY_KEYS:
            msg = f"event keys must be {sorted(BODY_KEYS)}, got {sorted(map(str, raw))}"
            raise EventDecodeError(msg)
        for key in ("id", "type", "occurred_at", "request_id"):
            if not isinstance(raw[key], str) or not raw[key]:
                msg = f"event field {key!r} must be a non-empty string"
                raise EventDecodeError(msg)
        if not isinstance(raw["data"], dict):
            msg = "event field 'data' must be an object"
            raise EventDecodeError(msg)
        try:
            parse_rfc3339(raw["occurred_at"])
        except ValueError as exc:
            msg = f"event field 'occurred_at' is not RFC 3339: {exc}"
            raise EventDecodeError(msg) from exc
        return cls(
            id=raw["id"],
            type=raw["type"],
            occurred_at=raw["occurred_at"],
            request_id=raw["request_id"],
            data=raw["data"],
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> Event:
        return cls.from_dict(_parsed(body, "event body"))

    def to_outbox_json(self) -> bytes:
        """One outbox entry: the body's fields, plus `headers` when there are any."""
        record: dict[str, Any] = self.to_dict()
        if self.headers:
            record[OUTBOX_HEADERS_KEY] = dict(self.headers)
        return orjson.dumps(record)

    @classmethod
    def from_outbox_json(cls, text: bytes | str) -> Event:
        """An outbox entry read back: the body checked as `from_json` does, and its headers.

        Entries written before the outbox kept headers have none, and read as events without.
        """
        raw = _parsed(text, "outbox entry")
        headers = raw.pop(OUTBOX_HEADERS_KEY, None) if isinstance(raw, dict) else None
        event = cls.from_dict(raw)
        if headers is None:
            return event
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            msg = "outbox entry 'headers' must be an object of strings"
            raise EventDecodeError(msg)
        return attrs.evolve(event, headers=headers)

    @classmethod
    def from_message(cls, body: bytes, headers: Mapping[str, object] | None) -> Event:
        """An event as it arrived: the body checked as `from_json` does, and the text headers
        it travelled with (so its trace can be continued); `x-request-id` is the body's own."""
        event = cls.from_json(body)
        carried = {k: v for k, v in (headers or {}).items() if isinstance(v, str) and k != REQUEST_ID_HEADER}
        return attrs.evolve(event, headers=carried) if carried else event

    @property
    def timestamp(self) -> datetime:
        """`occurred_at` as an aware datetime (AMQP carries it with whole-second precision)."""
        return parse_rfc3339(self.occurred_at)

    def amqp_properties(self) -> Basic.Properties:
        """The contract's message properties: persistent JSON, identified for dedupe and tracing."""
        return Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            message_id=self.id,
            timestamp=self.timestamp,
            app_id=APP_ID,
            message_type=self.type,
            headers={**self.headers, REQUEST_ID_HEADER: self.request_id},
        )


def _parsed(text: bytes | str, what: str) -> Any:
    """`text` as JSON; EventDecodeError naming `what` when it is not."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        msg = f"{what} is not JSON: {exc}"
        raise EventDecodeError(msg) from exc
