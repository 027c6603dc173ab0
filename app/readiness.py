"""Whether this process should get traffic: starting, ready, or draining.

`/readyz` answers 503 unless the phase is READY and every required dependency check
passes; the phase moves STARTING → READY → DRAINING and never back.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

import attrs


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


# A dependency check answers a short state word ("ok", "down", "embedded", ...) and whether
# that state still lets the service take traffic.
Check = Callable[[], Awaitable[tuple[str, bool]]]


@attrs.define
class Readiness:
    phase: Phase = Phase.STARTING
    checks: dict[str, Check] = attrs.Factory(dict)

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def report(self) -> tuple[bool, dict[str, str]]:
        """(ready?, state per dependency)."""
        states: dict[str, str] = {}
        ready = self.phase is Phase.READY
        for name, check in self.checks.items():
            state, ok = await check()
            states[name] = state
            ready = ready and ok
        return ready, states
