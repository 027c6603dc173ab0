from __future__ import annotations

import pytest

from app.clients.breaker import CircuitBreaker, CircuitState, Permit
from app.clients.retry import backoff_s, is_idempotent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, changes: list[tuple[str, str]]) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3,
        cooldown_s=5.0,
        clock=clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_failure(permit)


def state_of(breaker: CircuitBreaker) -> CircuitState:
    # a call, not the property: mypy would otherwise keep the narrowed type across mutations
    return breaker.state


def open_and_cool(breaker: CircuitBreaker, clock: FakeClock) -> Permit:
    fail(breaker, 3)
    clock.now += 5.0
    probe = breaker.acquire()
    assert probe is not None
    assert probe.probe
    return probe


def test_closed_breaker_lets_calls_through(breaker: CircuitBreaker) -> None:
    permit = breaker.acquire()
    assert permit is not None
    assert not permit.probe
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.retry_after_s() == 0


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker, changes: list[tuple[str, str]]) -> None:
    fail(breaker, 2)
    assert state_of(breaker) is CircuitState.CLOSED
    fail(breaker)
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.acquire() is None
    assert breaker.retry_after_s() == 5.0
    assert changes == [("closed", "open")]


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    permit = breaker.acquire()
    assert permit is not None
    breaker.record_success(permit)
    assert breaker.failures == 0
    fail(breaker, 2)
    assert state_of(breaker) is CircuitState.CLOSED


def test_retry_after_counts_down_the_cool_down(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 3.5
    assert breaker.retry_after_s() == pytest.approx(1.5)
    assert breaker.acquire() is None


def test_after_cool_down_exactly_one_probe_goes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    assert state_of(breaker) is CircuitState.HALF_OPEN
    probe = breaker.acquire()
    assert probe is not None
    assert probe.probe
    assert breaker.acquire() is None
    assert breaker.acquire() is None
    assert state_of(breaker) is CircuitState.HALF_OPEN


def test_successful_probe_closes(
    breaker: CircuitBreaker, clock: FakeClock, changes: list[tuple[str, str]]
) -> None:
    probe = open_and_cool(breaker, clock)
    breaker.record_success(probe)
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.acquire() is not None
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens_for_another_cool_down(breaker: CircuitBreaker, clock: FakeClock) -> None:
    probe = open_and_cool(breaker, clock)
    clock.now += 1.0
    breaker.record_failure(probe)
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.retry_after_s() == 5.0
    assert breaker.acquire() is None
    clock.now += 5.0
    assert breaker.acquire() is not None


def test_released_probe_hands_its_slot_to_the_next_caller(breaker: CircuitBreaker, clock: FakeClock) -> None:
    probe = open_and_cool(breaker, clock)
    breaker.release(probe)
    next_probe = breaker.acquire()
    assert next_probe is not None
    assert next_probe.probe


def test_late_verdicts_from_before_a_transition_are_ignored(breaker: CircuitBreaker, clock: FakeClock) -> None:
    slow = breaker.acquire()
    assert slow is not None
    fail(breaker, 3)
    breaker.record_success(slow)  # started while closed, answered after the circuit opened
    assert state_of(breaker) is CircuitState.OPEN

    clock.now += 5.0
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_success(probe)
    breaker.record_failure(slow)
    assert breaker.failures == 0
    assert state_of(breaker) is CircuitState.CLOSED


def test_release_outside_a_probe_changes_nothing(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit)
    assert breaker.failures == 2
    assert state_of(breaker) is CircuitState.CLOSED


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -0.1)])
def test_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown)


def test_backoff_is_full_jitter_over_a_capped_exponential() -> None:
    assert backoff_s(0, base_s=0.05, max_s=1.0, rand=lambda: 1.0) == pytest.approx(0.05)
    assert backoff_s(3, base_s=0.05, max_s=1.0, rand=lambda: 1.0) == pytest.approx(0.4)
    assert backoff_s(10, base_s=0.05, max_s=1.0, rand=lambda: 1.0) == pytest.approx(1.0)
    assert backoff_s(5000, base_s=0.05, max_s=1.0, rand=lambda: 0.5) == pytest.approx(0.5)
    assert backoff_s(2, base_s=0.05, max_s=1.0, rand=lambda: 0.0) == 0.0


@pytest.mark.parametrize(
    ("method", "idempotent"),
    [
        ("GET", True), ("head", True), ("PUT", True), ("DELETE", True), ("OPTIONS", True),
        ("POST", False), ("PATCH", False),
    ],
)
def test_only_idempotent_methods_are_retryable(method: str, idempotent: bool) -> None:
    assert is_idempotent(method) is idempotent
