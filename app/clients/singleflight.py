"""Coalesce concurrent calls by key: the first caller runs the call, the rest share its outcome.

The cache step wraps its upstream fetch in `SingleFlight.do(key, fetch)`, so fifty concurrent
misses on one user make one data-service call (Go's ``x/sync/singleflight``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, final

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@final
class SingleFlight(Generic[K, V]):
    """At most one in-flight call per key; the entry is forgotten as soon as the call ends.

    The shared call runs in its own task. A caller that is cancelled stops waiting but does not
    cancel the call for the others (it is awaited through `asyncio.shield`); if every caller
    goes away the call still runs to its end, and its result is dropped.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """How many calls are in flight."""
        return len(self._calls)

    async def do(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        """Run `fn` unless a call for `key` is already in flight; return (or raise) its outcome."""
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(fn())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        # A cancelled caller's `shield` marks the outcome retrieved, so a failed call whose
        # callers all left is not logged as "exception was never retrieved".
        if self._calls.get(key) is task:
            del self._calls[key]
