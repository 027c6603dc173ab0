"""Work that must finish though the request that started it is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

# The tasks started here, held until done: the event loop keeps only weak references to tasks.
_running: set[asyncio.Future[Any]] = set()


async def complete_despite_cancellation(work: Awaitable[T]) -> T:
    """Await `work` in a task of its own, so that a cancellation of the caller does not stop it.

    A request's task is cancelled when the process ends with the request still running
    (`asyncio.run` cancels what is left once the app is cleaned up), when it runs out of time
    (app/deadlines.py), when aiohttp's handler cancellation is on and the client goes away, or
    by a plugin's own deadline. One that
    already saved a change must still publish its event, invalidate its cache and end the
    sessions the change ends (contract §4, §9). A step catches `asyncio.CancelledError`, awaits
    the follow-up through this, and re-raises.

    A cancelled caller still waits for the work, then the cancellation goes on: the steps around
    it then see what the work did (the `committed_key` it set, say) as they unwind. A second
    cancellation stops that wait; the work still runs to its end.
    """
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_forget)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            with contextlib.suppress(Exception):  # the work logs its own failures
                await asyncio.shield(task)
        raise


def _forget(task: asyncio.Future[Any]) -> None:
    _running.discard(task)
    if not task.cancelled():
        # Marked as retrieved: when the caller was cancelled nobody awaits it, and the work logs
        # its own failures (asyncio would add "exception was never retrieved").
        task.exception()
