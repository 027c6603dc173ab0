"""The publisher actor's mailbox: letters (an event, its deadline, the caller's reply) in a
bounded queue, taken by one long-lived getter so that no letter is ever swallowed."""

from __future__ import annotations

import asyncio
from typing import final

import attrs

from app.clients.amqp.publishing import PublishOutcome
from app.models.events import Event


@attrs.define
class Letter:
    event: Event
    deadline: float  # loop time after which the actor outboxes rather than publishes
    reply: asyncio.Future[PublishOutcome]

    def answer(self, outcome: PublishOutcome) -> None:
        if not self.reply.done():
            self.reply.set_result(outcome)


@final
class Mailbox:
    """Letters from callers to the actor, at most `size` waiting."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Letter] = asyncio.Queue(maxsize=size)
        self._getter: asyncio.Task[Letter] | None = None

    def post(self, letter: Letter) -> bool:
        """Queue `letter`; False when the mailbox is full."""
        try:
            self._queue.put_nowait(letter)
        except asyncio.QueueFull:
            return False
        return True

    def getter(self) -> asyncio.Task[Letter]:
        """The task that finishes with the next letter; the same one until it is taken.

        One long-lived getter: an abandoned `Queue.get()` could swallow a letter.
        """
        if self._getter is None:
            self._getter = asyncio.create_task(self._queue.get())
        return self._getter

    def has_letter(self, *, taken_only: bool = False) -> bool:
        """Whether a letter is waiting: already taken by the getter, or (unless taken_only) queued."""
        taken = self._getter is not None and self._getter.done() and not self._getter.cancelled()
        return taken or (not taken_only and not self._queue.empty())

    def take(self) -> Letter:
        """The getter's letter (it must be done)."""
        assert self._getter is not None
        assert self._getter.done()
        getter, self._getter = self._getter, None
        return getter.result()

    def take_more(self, limit: int) -> list[Letter]:
        """Up to `limit` letters already queued, without waiting."""
        letters: list[Letter] = []
        while len(letters) < limit and not self._queue.empty():
            letters.append(self._queue.get_nowait())
        return letters

    def empty_out(self) -> list[Letter]:
        """Every letter left, the getter's first; the getter is cancelled if it has none."""
        letters: list[Letter] = []
        getter, self._getter = self._getter, None
        if getter is not None:
            if getter.done() and not getter.cancelled():
                letters.append(getter.result())
            else:
                getter.cancel()
        while not self._queue.empty():
            letters.append(self._queue.get_nowait())
        return letters
