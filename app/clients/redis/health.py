"""`RedisHealth`: whether Redis answers now, node by node, told once per change.

A check every `interval_s` PINGs the server (standalone, the Sentinel primary) or every master
of a cluster. The state is ``ok`` (all answer), ``degraded`` (a cluster with some masters
answering: their slots work, the others' fail at once) or ``down``. `/readyz` shows it with the
topology and the nodes.

An outage is two log lines, however long it lasts and however many requests notice it: a
WARNING when Redis (or part of it) stops answering, naming what and why, and an INFO when it
all answers again, saying after how long. A change in between (another master down, one back)
is one line too. After each check, the hooks run (`on_checked`): the replay of writes missed
during the outage (app/clients/redis/pending.py) is one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, final

from app.untraced import untraced

log = logging.getLogger("turnstile.redis")

HealthState = Literal["ok", "degraded", "down"]
DEFAULT_INTERVAL_S: Final = 1.0

# One round of checks: node name -> None when it answered, else why not.
Probe = Callable[[], Awaitable[dict[str, str | None]]]


@final
class RedisHealth:
    """The last known health of one Redis deployment.

    Args:
        name: how the log names it (``"Redis (cluster)"``).
        probe: checks every node once; never raises.
        interval_s: the time between two checks.
    """

    def __init__(self, name: str, probe: Probe, *, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.name = name
        self._probe = probe
        self.interval_s = interval_s
        self.state: HealthState = "down"
        self.nodes: dict[str, str | None] = {}
        self._checked_once = False
        self._outage_since: float | None = None
        self.on_checked: list[Callable[[HealthState], Awaitable[None]]] = []

    def details(self) -> dict[str, Any]:
        """What /readyz shows besides the state: each node and whether it answers."""
        return {"nodes": {node: "ok" if why is None else "down" for node, why in sorted(self.nodes.items())}}

    async def check(self) -> HealthState:
        """Check now, log what changed, run the hooks; the new state."""
        nodes = await self._probe()
        answering = [node for node, why in nodes.items() if why is None]
        state: HealthState = (
            "ok" if nodes and len(answering) == len(nodes) else "degraded" if answering else "down"
        )
        self._announce(state, nodes)
        self.state, self.nodes, self._checked_once = state, nodes, True
        for hook in self.on_checked:
            await hook(state)
        return state

    async def run(self) -> None:
        """Check every `interval_s` until cancelled."""
        with untraced():
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.check()
                except Exception:  # a failing hook must not stop the checks
                    log.exception("%s: a health check hook failed", self.name)

    def _announce(self, state: HealthState, nodes: dict[str, str | None]) -> None:
        down = {node: why for node, why in nodes.items() if why is not None}
        was_down = {node for node, why in self.nodes.items() if why is not None}
        if state == "ok":
            if self._outage_since is not None:
                log.info("%s answering again after %.1f s", self.name, time.monotonic() - self._outage_since)
                self._outage_since = None
            return
        if self._checked_once and set(down) == was_down:
            return  # nothing new to say
        what = "; ".join(f"{node}: {why}" for node, why in sorted(down.items()))
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            verb = "unavailable" if state == "down" else "degraded"
            log.warning("%s %s (%s); checking again every %.1f s", self.name, verb, what, self.interval_s)
        elif len(down) < len(was_down):
            log.info("%s partly answering again, still %s (%s)", self.name, state, what)
        else:
            log.warning("%s now %s (%s)", self.name, state, what)
