"""The leases this process takes on fetches of missing cache keys, and what each fetch gave.

A lease is claimed by the read that finds a key without an answer (`CacheBackend.read`), so two
requests of this process can read the same key at once: one claims, the other reads the claim as
someone's lease, possibly before the claimer has even seen its own reply. Each lease is therefore
reserved here before its claim is sent, with a future for the fetch's outcome: whoever of this
process finds the lease held waits on that future instead of asking Redis until the key is filled.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, final

T = TypeVar("T")


@final
class LocalLeases(Generic[T]):
    """Leases named after this process (so that other processes' never collide with them)."""

    def __init__(self) -> None:
        self._name = secrets.token_hex(8).encode()
        self._numbers = itertools.count()
        self._outcomes: dict[bytes, asyncio.Future[T]] = {}

    def reserve(self) -> bytes:
        """A new lease, known here from now on (a claim of it is about to be sent)."""
        lease = b"%s:%d" % (self._name, next(self._numbers))
        self._outcomes[lease] = asyncio.get_running_loop().create_future()
        return lease

    def forget(self, lease: bytes) -> None:
        """A reserved lease whose claim was not sent or did not win: nobody can wait on it."""
        outcome = self._outcomes.pop(lease, None)
        if outcome is not None and not outcome.done():
            outcome.cancel()

    def outcome(self, lease: bytes) -> asyncio.Future[T] | None:
        """The future outcome of the fetch under `lease`, when this process holds it."""
        return self._outcomes.get(_reserved(lease))

    async def run(self, lease: bytes, fetch: Callable[[], Awaitable[T]]) -> T:
        """Run the fetch `lease` was won for, in a task of its own: the callers waiting on the
        lease get its outcome even when the request that won it is cancelled."""
        task = asyncio.ensure_future(fetch())
        task.add_done_callback(lambda done: self._settle(_reserved(lease), done))
        return await asyncio.shield(task)

    def _settle(self, lease: bytes, task: asyncio.Task[T]) -> None:
        outcome = self._outcomes.pop(lease, None)
        if outcome is None or outcome.done():
            return
        if task.cancelled():
            outcome.cancel()
        elif (error := task.exception()) is not None:
            outcome.set_exception(error)
            outcome.add_done_callback(_retrieved)  # no waiter: no "exception never retrieved"
        else:
            outcome.set_result(task.result())


def _retrieved(outcome: asyncio.Future[Any]) -> None:
    if not outcome.cancelled():
        outcome.exception()


def _reserved(lease: bytes) -> bytes:
    # A won lease may name what the key held after a "|" (`LeaseClaim.new_lease`).
    return lease.partition(b"|")[0]
