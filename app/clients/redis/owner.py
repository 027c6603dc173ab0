"""The task that owns a coredis client's ``async with`` from start to stop.

coredis 6 runs no command unless the client's ``async with`` is active, and that block must
be entered and exited in one task. `ClientOwner` is that task. For a single server or
Sentinel, entering does not connect; for a cluster it discovers the topology and fails while
the cluster is down, so the owner enters again with backoff until it holds. While it holds,
it runs the companions it was given (the local mirror's tracking connection) beside it.

The pool reconnects by itself: a connection that the server closes leaves the pool and the
next command dials a new one; while the server is down each command fails fast (refused) or
after the stream timeout (hung). The ``async with`` survives both. Whether Redis answers is
`RedisHealth`'s business (app/clients/redis/health.py), so this module logs only at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

from app.clients.redis.errors import describe
from app.clients.redis.factory import BuiltClient
from app.clients.retry import Backoff

log = logging.getLogger("turnstile.redis")

BACKOFF_BASE_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0

Companion = Callable[[BuiltClient], Coroutine[Any, Any, None]]


class ClientOwner:
    """Holds `built`'s context in a task of its own, named `name`, with `companions` beside it."""

    def __init__(self, built: BuiltClient, *, name: str, companions: Sequence[Companion] = ()) -> None:
        self.built = built
        self._name = name
        self._companions = tuple(companions)
        self._stopping = asyncio.Event()
        self._first_try = asyncio.Event()
        self._held = False
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """Whether the client's context is active now (commands can be sent)."""
        return self._held

    async def start(self) -> None:
        """Start the task; return after its first try to enter, whether or not it worked."""
        self._task = asyncio.create_task(self._own(), name=self._name)
        await self._first_try.wait()

    async def stop(self) -> None:
        """Leave the context in the owner task and wait for it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await task
        self.built.close()

    async def _own(self) -> None:
        backoff = Backoff(BACKOFF_BASE_S, BACKOFF_MAX_S)
        while not self._stopping.is_set():
            try:
                async with self.built.entered():
                    self._held = True
                    self._first_try.set()
                    backoff.reset()
                    await self._hold()
                return
            except Exception as exc:  # the owner must outlive whatever ends the client's context
                log.debug("%s: client context ended (%s); entering it again", self._name, describe(exc))
            finally:
                self._held = False
            self._first_try.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff.next_s())

    async def _hold(self) -> None:
        """Wait for stop, running the companions meanwhile."""
        tasks = [asyncio.create_task(companion(self.built)) for companion in self._companions]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
