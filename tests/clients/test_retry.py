"""`Backoff`: the waits of one reconnect loop grow to a cap, with jitter, and start over once it worked."""

from __future__ import annotations

from app.clients.retry import Backoff


def test_waits_grow_to_the_cap_and_start_over_after_a_reset() -> None:
    backoff = Backoff(base_s=0.5, max_s=4.0)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        assert 0.0 <= backoff.next_s() <= ceiling
    assert backoff.attempt == len(ceilings)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_s() <= 0.5


def test_waits_are_jittered() -> None:
    waits = {Backoff(base_s=1.0, max_s=1.0).next_s() for _ in range(20)}
    assert len(waits) > 1
