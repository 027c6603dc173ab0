"""Whether this process should get traffic: starting, ready, or draining.

`/readyz` answers 503 unless the phase is READY and every required dependency check
passes; the phase moves STARTING → READY → DRAINING and never back. Besides each check's
short state word, a dependency may describe itself (`add_detail`): Redis names its topology
and each node it checks.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any

import attrs


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


# A dependency check answers a short state word ("ok", "degraded", "down", "embedded", ...) and
# whether that state still lets the service take traffic.
Check = Callable[[], Awaitable[tuple[str, bool]]]
# What a dependency says about itself in /readyz's "details" (a JSON object; no secrets).
Detail = Callable[[], dict[str, Any]]


@attrs.define
class Readiness:
    phase: Phase = Phase.STARTING
    checks: dict[str, Check] = attrs.Factory(dict)
    details: dict[str, Detail] = attrs.Factory(dict)

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def add_detail(self, name: str, detail: Detail) -> None:
        self.details[name] = detail

    async def report(self) -> tuple[bool, dict[str, str]]:
        """(ready?, state per dependency)."""
        states: dict[str, str] = {}
        ready = self.phase is Phase.READY
        for name, check in self.checks.items():
            state, ok = await check()
            states[name] = state
            ready = ready and ok
        return ready, states

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each dependency's description, by name."""
        return {name: detail() for name, detail in self.details.items()}
