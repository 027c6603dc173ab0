"""The publisher's use of its outbox: store, peek, forget and measure, never raising.

Whatever backs the outbox (Redis, a file) may fail; the publisher must survive it. A store
that fails leaves the event in the error log as the last resort (``"logged"``). A failure to
read the outbox (its depth, its head) is one WARNING per outage of the outbox's store and one
INFO when it answers again, never a traceback per attempt: until then the publisher publishes
new events directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from typing import final

from app.clients.amqp.metrics import EVENTS_PUBLISHED, OUTBOX_DEPTH
from app.clients.amqp.publishing import PublishOutcome
from app.clients.outbox import Outbox
from app.models.events import Event

log = logging.getLogger("turnstile.amqp.publisher")


@final
class OutboxKeeper:
    """`outbox` behind calls that log and count instead of raising.

    Args:
        outbox: where events wait for the broker.
        retry_s: how long a failed read keeps the publisher from reading the outbox again.
    """

    def __init__(self, outbox: Outbox, *, retry_s: float) -> None:
        self.outbox = outbox
        self._retry_s = retry_s
        self._retry_at = 0.0
        self._unreadable_since: float | None = None

    async def store(self, event: Event) -> PublishOutcome:
        try:
            await self.outbox.append(event)
        except Exception:  # any outbox backend's failure: the log is the last place left
            log.exception(
                "event outbox failed; event kept only in this log line: %s",
                event.to_outbox_json().decode(),
                extra={"request_id": event.request_id},
            )
            EVENTS_PUBLISHED.labels("logged").inc()
            return "logged"
        EVENTS_PUBLISHED.labels("outboxed").inc()
        await self.update_depth()
        return "outboxed"

    async def peek(self, n: int) -> list[Event] | None:
        """The `n` oldest events, or None when the outbox cannot be read now."""
        try:
            events = await self.outbox.peek(n)
        except Exception as exc:  # any outbox backend's failure; the actor must survive it
            self._unreadable(exc)
            self._retry_at = asyncio.get_running_loop().time() + self._retry_s
            return None
        self._readable()
        return events

    async def forget(self, event_ids: Collection[str]) -> None:
        """Drop confirmed events; on failure they stay, and are sent again (at-least-once)."""
        if not event_ids:
            return
        try:
            await self.outbox.remove(event_ids)
        except Exception as exc:  # any outbox backend's failure
            log.warning("event outbox could not drop %d confirmed events (%r); they will be sent again",
                        len(event_ids), exc)
        await self.update_depth()

    async def has_backlog(self) -> bool:
        """Whether anything waits; an unreadable outbox counts as empty until it answers."""
        try:
            depth = await self.outbox.depth()
        except Exception as exc:  # any outbox backend's failure
            self._unreadable(exc)
            return False
        self._readable()
        OUTBOX_DEPTH.set(depth)
        return depth > 0

    async def update_depth(self) -> None:
        with contextlib.suppress(Exception):  # a gauge must never fail a publish
            OUTBOX_DEPTH.set(await self.outbox.depth())

    def usable(self) -> bool:
        """False for a while after a failed read."""
        return asyncio.get_running_loop().time() >= self._retry_at

    def _unreadable(self, exc: Exception) -> None:
        if self._unreadable_since is None:
            self._unreadable_since = time.monotonic()
            log.warning("event outbox unreadable (%r); new events are published directly until it answers", exc)

    def _readable(self) -> None:
        if self._unreadable_since is not None:
            log.info("event outbox readable again after %.1f s", time.monotonic() - self._unreadable_since)
            self._unreadable_since = None
