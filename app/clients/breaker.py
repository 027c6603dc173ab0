"""A consecutive-failure circuit breaker with a single half-open probe.

closed --(``failure_threshold`` consecutive failures)--> open
open --(``cooldown_s`` elapsed; the next caller is the probe)--> half_open
half_open --(probe succeeds)--> closed;  half_open --(probe fails)--> open (a new cool-down)

While the probe is in flight every other caller is refused. Each call holds a `Permit`;
a verdict from a permit issued before the last transition is ignored, so a slow call that
started while the circuit was closed cannot close (or re-open) it later.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import final

import attrs


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@attrs.frozen
class Permit:
    """Leave to make one call; hand it back with a verdict (`record_*`) or without one (`release`)."""

    generation: int
    probe: bool


@final
class CircuitBreaker:
    """Counts consecutive failures of one upstream and refuses calls while it is down.

    Args:
        failure_threshold: consecutive failures that open the circuit (>= 1).
        cooldown_s: how long the circuit stays open before one probe is let through (>= 0).
        clock: monotonic seconds; tests inject a fake one.
        on_change: called with ``(old, new)`` on every state change (logging, metrics).

    Raises:
        ValueError: on a threshold below 1 or a negative cool-down.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            msg = f"failure_threshold must be at least 1, got {failure_threshold}"
            raise ValueError(msg)
        if cooldown_s < 0:
            msg = f"cooldown_s must not be negative, got {cooldown_s}"
            raise ValueError(msg)
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_taken = False
        self._generation = 0

    @property
    def state(self) -> CircuitState:
        """The state as a caller would meet it: an open circuit whose cool-down is over is half-open."""
        if self._state is CircuitState.OPEN and self.retry_after_s() <= 0:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed."""
        return self._failures

    def retry_after_s(self) -> float:
        """Seconds left of the cool-down (0 unless open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def acquire(self) -> Permit | None:
        """A permit for one call, or None when the circuit refuses it (open, or a probe is in flight)."""
        if self._state is CircuitState.OPEN:
            if self.retry_after_s() > 0:
                return None
            self._move(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._probe_taken:
                return None
            self._probe_taken = True
            return Permit(self._generation, probe=True)
        return Permit(self._generation, probe=False)

    def record_success(self, permit: Permit) -> None:
        """The upstream answered sensibly: a probe closes the circuit; a closed one forgets its failures."""
        if permit.generation != self._generation:
            return
        self._failures = 0
        if permit.probe:
            self._move(CircuitState.CLOSED)

    def record_failure(self, permit: Permit) -> None:
        """The upstream failed: a probe re-opens the circuit; enough failures in a row open it."""
        if permit.generation != self._generation:
            return
        if permit.probe:
            self._open()
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open()

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (e.g. cancelled): a probe's slot goes to the next caller."""
        if permit.probe and permit.generation == self._generation:
            self._probe_taken = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN)

    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        self._generation += 1
        self._failures = 0
        self._probe_taken = False
        if self._on_change is not None and old is not new:
            self._on_change(old, new)
