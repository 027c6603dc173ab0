"""The publisher's use of its outbox never raises, and an unreadable outbox is one warning, not one per try."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import pytest

from app.clients.amqp.outboxing import OutboxKeeper
from app.clients.outbox import FileOutbox
from app.models.events import Event

LOGGER = "turnstile.amqp.publisher"


class BrokenOutbox:
    """An outbox whose store is away until `working` is set."""

    def __init__(self, path: Path) -> None:
        self.working = False
        self._inner = FileOutbox(path)

    def _check(self) -> None:
        if not self.working:
            msg = "outbox store unreachable"
            raise ConnectionError(msg)

    async def append(self, event: Event) -> None:
        self._check()
        await self._inner.append(event)

    async def peek(self, n: int) -> list[Event]:
        self._check()
        return await self._inner.peek(n)

    async def remove(self, event_ids: Collection[str]) -> None:
        self._check()
        await self._inner.remove(event_ids)

    async def depth(self) -> int:
        self._check()
        return await self._inner.depth()


async def test_an_unreadable_outbox_is_one_warning_and_one_recovery_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    outbox = BrokenOutbox(tmp_path)
    keeper = OutboxKeeper(outbox, retry_s=0.0)
    for _ in range(5):
        assert await keeper.has_backlog() is False
        assert await keeper.peek(10) is None
    outbox.working = True
    assert await keeper.has_backlog() is False
    assert await keeper.peek(10) == []

    lines = [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records if r.name == LOGGER]
    assert [(level, exc_info) for level, _, exc_info in lines] == [(logging.WARNING, None), (logging.INFO, None)]
    assert "event outbox unreadable" in lines[0][1]
    assert lines[1][1].startswith("event outbox readable again after ")


async def test_a_failed_read_keeps_the_outbox_unused_for_a_while(tmp_path: Path) -> None:
    keeper = OutboxKeeper(BrokenOutbox(tmp_path), retry_s=60.0)
    assert keeper.usable()
    await keeper.peek(1)
    assert not keeper.usable()


async def test_an_event_the_outbox_cannot_take_is_logged_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = OutboxKeeper(BrokenOutbox(tmp_path), retry_s=0.0)
    event = Event.create("user.deleted", {"id": 3}, "req-3")
    assert await keeper.store(event) == "logged"
    assert any(event.id in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_stored_events_are_peeked_and_forgotten(tmp_path: Path) -> None:
    outbox = BrokenOutbox(tmp_path)
    outbox.working = True
    keeper = OutboxKeeper(outbox, retry_s=0.0)
    events = [Event.create("user.updated", {"id": i}, "r") for i in range(3)]
    for event in events:
        assert await keeper.store(event) == "outboxed"
    assert await keeper.has_backlog()
    assert await keeper.peek(2) == events[:2]
    await keeper.forget([events[0].id])
    assert await keeper.peek(5) == events[1:]
