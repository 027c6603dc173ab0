"""Whether an upstream answered lately, from its calls and, while it is idle, from probes.

A circuit breaker only knows what calls told it: one that never made a call reads "closed", and
one whose cool-down ended reads "half-open" until a call comes. Neither says the upstream answers,
so readiness built on them said "ok" for a data service that was never reached (a mistyped
URL passed a rolling update) and "half_open" for one still down at night. Here every call's
verdict is noted, and a probe is due whenever no verdict is fresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Literal, final

# "unreachable": no answer (refused connection, reset, DNS); "timeout": none in time; "failing":
# it answers, with a 5xx or what is no answer of the contract's (an operator looks at the
# service itself, not at the network); "refused": a 401 or 403 to our credentials.
State = Literal["unknown", "ok", "unreachable", "timeout", "failing", "refused"]
STATES: Final[tuple[State, ...]] = ("unknown", "ok", "unreachable", "timeout", "failing", "refused")
# How long a verdict stands before a probe is due.
FRESH_S: Final = 5.0


@final
class Reachability:
    """The last verdict on an upstream: never seen, answered, unreachable, too slow, answering
    badly, or refusing our credentials (a 401 or 403: a wrong token is a configuration fault,
    not a client's)."""

    def __init__(
        self, *, fresh_s: float = FRESH_S, clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State], object] = lambda _state: None,
    ) -> None:
        self.fresh_s = fresh_s
        self._clock = clock
        self._on_change = on_change
        self.state: State = "unknown"
        self._at: float | None = None
        on_change(self.state)

    def note(self, state: State) -> None:
        if state != self.state:
            self._on_change(state)
        self.state = state
        self._at = self._clock()

    def probe_due(self) -> bool:
        return self._at is None or self._clock() - self._at >= self.fresh_s
