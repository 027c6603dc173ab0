"""An event's headers (contract §9: `x-request-id`, and `traceparent` when tracing) travel
beside its body: sent with it, kept when it is consumed, never part of the body."""

from __future__ import annotations

import attrs
import orjson
import pytest

from app.models.events import Event, EventDecodeError

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def event() -> Event:
    return Event.create("user.updated", {"id": 7}, "req-1")


def test_headers_are_sent_beside_the_body_and_the_request_id_is_the_body_s() -> None:
    traced = attrs.evolve(event(), headers={"traceparent": TRACEPARENT, "x-request-id": "forged"})
    properties = traced.amqp_properties()
    assert properties.headers == {"traceparent": TRACEPARENT, "x-request-id": "req-1"}
    assert "traceparent" not in traced.to_dict()
    assert traced == attrs.evolve(traced, headers={})  # the event is its body


def test_a_consumed_event_keeps_the_text_headers_it_came_with() -> None:
    sent = event()
    headers = {"x-request-id": "req-1", "traceparent": TRACEPARENT, "x-retries": 2, "x-death": [{"count": 1}]}
    received = Event.from_message(sent.to_json(), headers)
    assert received == sent
    assert received.headers == {"traceparent": TRACEPARENT}
    assert Event.from_message(sent.to_json(), None).headers == {}


def test_an_outbox_entry_keeps_the_headers_so_a_late_event_continues_its_trace() -> None:
    traced = attrs.evolve(event(), headers={"traceparent": TRACEPARENT})
    entry = traced.to_outbox_json()
    assert b"traceparent" not in traced.to_json()  # the message body never carries it
    back = Event.from_outbox_json(entry)
    assert back == traced
    assert back.headers == {"traceparent": TRACEPARENT}


def test_an_outbox_entry_without_headers_reads_as_an_event_without_them() -> None:
    plain = event()
    assert plain.to_outbox_json() == plain.to_json()  # entries written before headers were kept
    assert Event.from_outbox_json(plain.to_json()).headers == {}


@pytest.mark.parametrize("headers", [["traceparent"], {"traceparent": 1}, "x"])
def test_an_outbox_entry_with_headers_of_another_shape_is_unreadable(headers: object) -> None:
    record = {**event().to_dict(), "headers": headers}
    with pytest.raises(EventDecodeError, match="headers"):
        Event.from_outbox_json(orjson.dumps(record))
