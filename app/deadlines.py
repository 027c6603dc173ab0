"""A deadline on every request (TURNSTILE_REQUEST_TIMEOUT_S).

aiohttp lets a handler run after its client has gone: a team's step that awaits something that
never comes would hold its request, and what it holds, for the life of the process, one more with
every retry. Past the deadline the request's task is cancelled (the follow-ups of a saved write
still complete, see `complete_despite_cancellation`) and it answers 504.

`asyncio.timeout` around each request would cost a timer handle per request; here a request costs
a dict entry, and one sweep a second (or sooner for short deadlines) cancels what has run out.
Requests start in deadline order, so a sweep stops at the first one still in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Final, final

from aiohttp import web

from app.errors import GatewayTimeout
from app.pipeline.types import Handler

# A sweep at least this often; a deadline is kept to within this much (or a quarter of itself).
SWEEP_INTERVAL_S: Final = 1.0


@final
class RequestDeadlines:
    """The requests running in one app, by task, and when each must have answered."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._running: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interval_s = min(SWEEP_INTERVAL_S, timeout_s / 4)

    def watch(self) -> asyncio.Task[Any] | None:
        """Start the current request's clock; its task, to hand to `ended` (None outside a task)."""
        # With the loop named (once started), no `get_running_loop()`: on Python 3.11 that
        # is a getpid() system call.
        task = asyncio.current_task(self._loop)
        if task is not None:
            self._running[task] = time.monotonic() + self.timeout_s
        return task

    def ended(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._running.pop(task, None)
            self._expired.discard(task)

    def ran_out(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether the CancelledError `task` is handling came from its deadline alone: then it is
        taken back (`uncancel`) and the request answers instead. Another cancellation (the
        process ending) still cancels it."""
        if task is None or task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def timed_out(self) -> GatewayTimeout:
        return GatewayTimeout(f"The request did not complete within {self.timeout_s:g} s.")

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.call_later(self._interval_s, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        now = time.monotonic()
        for task, deadline in list(self._running.items()):
            if deadline > now:
                break
            del self._running[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
        assert self._loop is not None  # set by `start`, which scheduled this
        self._sweeper = self._loop.call_later(self._interval_s, self._sweep)


request_deadlines_key: Final = web.AppKey("request_deadlines", RequestDeadlines)


async def request_deadlines_ctx(app: web.Application) -> AsyncIterator[None]:
    """The sweeper runs while the app serves."""
    deadlines = app[request_deadlines_key]
    deadlines.start()
    yield
    deadlines.stop()


async def within_deadline(deadlines: RequestDeadlines, handler: Handler, request: web.Request) -> web.StreamResponse:
    """`handler`'s answer, or a 504 once the request has run out of time."""
    task = deadlines.watch()
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if deadlines.ran_out(task):
            raise deadlines.timed_out() from None
        raise
    finally:
        deadlines.ended(task)
