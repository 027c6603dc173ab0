"""The record of tombstones stored right after a write, which the subscriptions consult."""

from __future__ import annotations

import pytest

from plugins.cache.made import MadeInvalidations


def test_an_events_stored_keys_are_kept_for_every_subscription_that_asks() -> None:
    made = MadeInvalidations()
    made.record("event-1", ["user:7"])
    made.record("event-1", ["user:8"])
    assert made.made("event-1") == {"user:7", "user:8"}
    assert made.made("event-1") == {"user:7", "user:8"}  # the shared and the per-instance queue both ask
    assert made.made("event-2") == frozenset()


def test_nothing_stored_records_nothing() -> None:
    made = MadeInvalidations()
    made.record("event-1", [])  # every tombstone deferred: the subscriptions must write them
    assert made.made("event-1") == frozenset()
    assert len(made) == 0


def test_the_oldest_events_are_forgotten_past_the_bound() -> None:
    made = MadeInvalidations(max_events=2)
    for n in range(3):
        made.record(f"event-{n}", [f"user:{n}"])
    assert len(made) == 2
    assert made.made("event-0") == frozenset()  # invalidated again, as before the record existed
    assert made.made("event-2") == {"user:2"}


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MadeInvalidations(max_events=0)
