"""A message whose handler failed because a dependency is down waits for it (contract §9).

A failure that says "a dependency is down" (Redis, the data service: what `waits_for` accepts)
is not the message's fault, and spending its retries on it would dead-letter good work during
any outage longer than a few seconds. Such a message stays with its consumer and is tried
again with capped backoff until the dependency answers or `max_wait_s` has passed; then it is
dead-lettered like a message that failed for good. The wait is in place (the message stays
unacked, its prefetch slot taken), under RabbitMQ's delivery acknowledgement timeout (30 min
by default): keep `max_wait_s` below it.

An outage is two log lines per consumer: a WARNING when its first message starts waiting, an
INFO when no message waits any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, final

from app.clients.amqp.metrics import EVENTS_CONSUMED
from app.clients.retry import Backoff

log = logging.getLogger("turnstile.amqp.consumer")

DEFAULT_MAX_WAIT_S: Final = 600.0
WAIT_BASE_S: Final = 0.5
WAIT_MAX_S: Final = 30.0


class WaitInterrupted(Exception):
    """The consumer is stopping while a message waits: leave it unsettled for redelivery."""


class WaitedTooLong(Exception):
    """The dependency stayed down for the whole wait: the message is dead-lettered."""


@final
class DependencyWaits:
    """The waits of one consumer's messages.

    Args:
        name: the subscription, for the log and the metrics.
        waits_for: whether a failure means "a dependency is down".
        max_wait_s: how long one message waits at most (0: never; the failure is then retried
            like any other).
        base_s, max_s: the backoff between tries.
    """

    def __init__(
        self, name: str, waits_for: Callable[[BaseException], bool], *, max_wait_s: float = DEFAULT_MAX_WAIT_S,
        base_s: float = WAIT_BASE_S, max_s: float = WAIT_MAX_S,
    ) -> None:
        self.name = name
        self.waits_for = waits_for
        self.max_wait_s = max_wait_s
        self._base_s = base_s
        self._max_s = max_s
        self._waiting = 0
        self._since = 0.0

    async def run(self, attempt: Callable[[], Awaitable[None]], stopping: asyncio.Future[None]) -> None:
        """Await `attempt` until it succeeds; raise its failure when it is not a dependency's,
        `WaitedTooLong` once `max_wait_s` passed, `WaitInterrupted` on stop."""
        deadline = time.monotonic() + self.max_wait_s
        backoff = Backoff(self._base_s, self._max_s)
        waiting = False
        try:
            while True:
                try:
                    await attempt()
                    return
                except Exception as exc:
                    if self.max_wait_s <= 0 or not self.waits_for(exc):
                        raise  # a failure for the retries
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        msg = f"a dependency stayed down for {self.max_wait_s:.0f} s: {exc}"
                        raise WaitedTooLong(msg) from exc
                    if not waiting:
                        waiting = True
                        self._start_waiting(exc)
                    EVENTS_CONSUMED.labels(self.name, "waited").inc()
                await asyncio.wait([stopping], timeout=min(backoff.next_s(), remaining))
                if stopping.done():
                    raise WaitInterrupted
        finally:
            if waiting:
                self._stop_waiting()

    def _start_waiting(self, exc: BaseException) -> None:
        self._waiting += 1
        if self._waiting == 1:
            self._since = time.monotonic()
            log.warning("consumer %s: events wait for a dependency (%s); retrying with backoff for up to %.0f s",
                        self.name, exc, self.max_wait_s)

    def _stop_waiting(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            log.info("consumer %s: no event waits for a dependency any more (after %.1f s)",
                     self.name, time.monotonic() - self._since)
