from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from app.models.events import Event, EventDecodeError


def test_create_fills_id_time_and_request_id() -> None:
    event = Event.create("user.created", {"id": 7, "email": "a@b.c"}, "req-1")

    assert uuid.UUID(event.id).version == 4
    assert event.type == "user.created"
    assert event.request_id == "req-1"
    assert event.occurred_at.endswith("Z")
    assert abs(datetime.now(UTC) - event.timestamp) < timedelta(seconds=5)


def test_body_has_exactly_the_contract_keys() -> None:
    event = Event.create("user.deleted", {"id": 3}, "req-2")

    body = orjson.loads(event.to_json())

    assert body == {
        "id": event.id,
        "type": "user.deleted",
        "occurred_at": event.occurred_at,
        "request_id": "req-2",
        "data": {"id": 3},
    }


def test_json_round_trip_is_lossless() -> None:
    event = Event.create("user.updated", {"id": 1, "roles": ["user"], "full_name": None}, "r")

    assert Event.from_json(event.to_json()) == event
    assert Event.from_json(event.to_json()).to_json() == event.to_json()


def test_amqp_properties_follow_the_contract() -> None:
    event = Event.create("user.created", {"id": 1}, "req-3")

    props = event.amqp_properties()

    assert props.message_id == event.id
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.app_id == "turnstile"
    assert props.headers == {"x-request-id": "req-3"}
    assert props.timestamp == event.timestamp


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id": "x"}',
        b'{"id": "x", "type": "t", "occurred_at": "2026-01-01T00:00:00Z", "request_id": "r", "data": []}',
        b'{"id": "x", "type": "t", "occurred_at": "yesterday", "request_id": "r", "data": {}}',
        b'{"id": "x", "type": "t", "occurred_at": "2026-01-01T00:00:00", "request_id": "r", "data": {}}',
        b'{"id": "x", "type": "t", "occurred_at": "2026-01-01T00:00:00Z", "request_id": "r", "data": {}, "extra": 1}',
        b'{"id": 5, "type": "t", "occurred_at": "2026-01-01T00:00:00Z", "request_id": "r", "data": {}}',
    ],
)
def test_from_json_rejects_anything_but_an_event(body: bytes) -> None:
    with pytest.raises(EventDecodeError):
        Event.from_json(body)
