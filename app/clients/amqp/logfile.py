"""`LogFilePublisher`: the embedded default without a broker (contract §3)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import final

from app.clients.amqp.metrics import EVENTS_PUBLISHED
from app.clients.amqp.publishing import DEFAULT_CONFIRM_DEADLINE_S, DEFAULT_FLUSH_DEADLINE_S, PublishOutcome
from app.models.events import Event
from app.private_files import open_private

log = logging.getLogger("turnstile.amqp.publisher")


@final
class LogFilePublisher:
    """Each event becomes a JSON line in a file and a log line.

    Args:
        path: the JSON-lines file (``./var/events.jsonl`` by default from the settings).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    @property
    def state(self) -> str:
        return "embedded"

    async def ready(self) -> bool:
        return True

    async def start(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

    async def stop(self, flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S) -> None:
        """Nothing to flush: every `publish` returns only after its line is written."""

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        line = event.to_json() + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line)
        log.info("event %s %s", event.type, event.id, extra={"request_id": event.request_id})
        EVENTS_PUBLISHED.labels("logged").inc()
        return "logged"

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_private(self.path, append=True) as file:
            file.write(line)
