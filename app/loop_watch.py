"""How long code held the event loop without awaiting: a metric, and a warning that names the code.

Everything this service does runs on one event loop per process, so a plugin's `def` hook that
calls a blocking client, or a step that parses something huge, stops every other request of the
process while it runs; nothing can interrupt it (the deadlines of app/deadlines.py and the hook
deadline only act at an await). What can be done is to see it:

- a timer set every TICK_S measures how late the loop runs it:
  `turnstile_event_loop_lag_seconds` (near zero on a healthy process; a busy but healthy one
  stays within milliseconds);
- a watchdog thread notices when the loop has not run that timer for `blocked_after_s`
  (TURNSTILE_LOOP_BLOCKED_S), takes the stack of the loop's thread at that moment (the code
  holding it) and logs it as a warning, so the operator reads which plugin's function held every
  request up, even when the loop never runs again. The thread may log: while the loop is held,
  the loop's thread writes no line of its own.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from typing import Final, final

from aiohttp import web
from prometheus_client import Histogram

log = logging.getLogger("turnstile.loop")

TICK_S: Final = 0.25
# How often the watchdog looks; a stall is caught this much after it passed the bound, at most.
WATCH_EVERY_S: Final = 0.05
# The frames of the stack kept, innermost last: enough to reach from the blocking call to the
# step or hook that made it.
STACK_FRAMES: Final = 12

LOOP_LAG = Histogram(
    "turnstile_event_loop_lag_seconds",
    "How late the event loop ran a timer due now: time some code held it without awaiting",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


@final
class LoopWatch:
    """The lag timer on the loop, and the watchdog thread beside it."""

    def __init__(self, blocked_after_s: float) -> None:
        self.blocked_after_s = blocked_after_s
        self._due = 0.0  # when the timer should next run (time.monotonic)
        self._timer: asyncio.TimerHandle | None = None
        self._loop_thread = 0
        # The stall last reported, named by its timer's due time (the watchdog's own).
        self._reported = -1.0
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._schedule()
        self._watchdog = threading.Thread(target=self._watch, name="turnstile-loop-watch", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    def _schedule(self) -> None:
        self._due = time.monotonic() + TICK_S
        self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        LOOP_LAG.observe(max(0.0, time.monotonic() - self._due))
        self._schedule()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_EVERY_S):
            due = self._due
            held_s = time.monotonic() - due
            if held_s < self.blocked_after_s or self._reported == due:
                continue
            frame = sys._current_frames().get(self._loop_thread)  # documented in sys, despite its name
            if frame is None or self._due != due:  # the loop moved on meanwhile
                continue
            stack = "".join(traceback.format_stack(frame, limit=STACK_FRAMES)).rstrip()
            self._reported = due
            log.warning("the event loop has been held for %.2f s without an await, every request of this "
                        "process waiting; it is running:\n%s", held_s, stack)


loop_watch_key: Final = web.AppKey("loop_watch", LoopWatch)


async def loop_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    watch = app[loop_watch_key]
    watch.start()
    yield
    watch.stop()
