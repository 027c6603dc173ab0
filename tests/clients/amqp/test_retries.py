"""Counting retries in the message itself: the count, the waits, and the copy's properties."""

from __future__ import annotations

from pamqp.commands import Basic

from app.clients.amqp.retries import RETRIES_HEADER, retry_delay_s, with_headers


def test_each_retry_waits_at_least_half_its_doubling_ceiling() -> None:
    for attempt, ceiling in enumerate([0.2, 0.4, 0.8, 1.0, 1.0]):
        for _ in range(20):
            assert ceiling / 2 <= retry_delay_s(attempt, 0.2, 1.0) <= ceiling


def test_no_delay_means_none() -> None:
    assert retry_delay_s(2, 0, 30) == 0.0


def test_the_copy_keeps_every_property_and_sets_the_count() -> None:
    original = Basic.Properties(
        content_type="application/json", delivery_mode=2, message_id="m-1", app_id="turnstile",
        headers={"x-request-id": "req-1", RETRIES_HEADER: 1},
    )
    copy = with_headers(original, {RETRIES_HEADER: 2})
    assert copy.headers == {"x-request-id": "req-1", RETRIES_HEADER: 2}
    assert (copy.content_type, copy.delivery_mode, copy.message_id, copy.app_id) == (
        "application/json", 2, "m-1", "turnstile",
    )
    assert original.headers is not None
    assert original.headers[RETRIES_HEADER] == 1
