"""How many password hashes run at once (contract §12): at most as many as the process may use
cores, a short queue behind them, and past it a 503 with Retry-After.

argon2id at production cost is ~90 ms of CPU and 64 MiB per hash. Unbounded, a login storm
queues requests for seconds and every hash holds its memory at once (a pod sized for a few
is OOM-killed); bounded, a storm answers 503 quickly and other routes keep their speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from app import OutageLog, ServiceUnavailable, this_worker

T = TypeVar("T")

CPU_MAX: Final = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
RETRY_AFTER_S: Final = 1
# The longest a hash waits in the queue for a thread before its request is answered 503.
MAX_QUEUE_WAIT_S: Final = 2.0
# How late a busy event loop may run the wait's timeout: a wait this much past the bound still
# counts as bounded (the benchmark's login storm checks every wait against both).
LATE_TIMEOUT_S: Final = 0.1
# The hashing threads' nice value: the lowest priority. The event loop thread keeps nice 0, so
# while it has work the scheduler gives it the CPU (weight 1024 against 15 per hashing thread)
# and a storm of logins cannot slow the other routes; hashing takes whatever the loop leaves.
HASHING_NICE: Final = 19

HASHES_IN_FLIGHT = Gauge(
    "turnstile_password_hashes_in_flight", "Password hashes and checks running or queued in this process",
    multiprocess_mode="livesum",  # under --workers N: every worker's
)
HASHES_REFUSED = Counter(
    "turnstile_password_hashes_refused_total",
    "Password hashes and checks refused with 503 because the hashing queue was full",
)
# Buckets around the bound, so a scrape shows whether any wait went past it.
HASH_WAIT_SECONDS = Histogram(
    "turnstile_password_hash_wait_seconds",
    "How long a password hash or check waited in the queue for a hashing thread (refused past the bound)",
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 1.5, MAX_QUEUE_WAIT_S, MAX_QUEUE_WAIT_S + LATE_TIMEOUT_S, 5.0),
)


def usable_cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a
    container's CPU limit, rounded up), shared with the other workers of `--workers N` (each
    gets 1/N: N workers must not run N times the hashes the host has cores for), at least 1."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, math.ceil(int(quota) / int(period)))
    worker = this_worker()
    if worker is not None:
        cores //= worker.of
    return max(1, cores)


# A storm's refusals, told once when they begin (again after 30 s without one): the 503s alone
# left no line but the access lines, and the runbook starts from the logs. No "over" line: in a
# storm admitted hashes and refusals alternate all the time, and each would end and start one.
storm_log = OutageLog(logging.getLogger("turnstile.auth.hashing"), "password hashing")


def _refused(msg: str) -> ServiceUnavailable:
    HASHES_REFUSED.inc()
    refusal = ServiceUnavailable(msg, retry_after_s=RETRY_AFTER_S)
    storm_log.warning("logins, registrations or password changes asked for more hashes than it takes "
                      "(turnstile_password_hashes_refused_total counts them)", refusal)
    return refusal


def lower_thread_priority() -> None:
    """Give the calling thread the lowest CPU priority. On Linux nice is per thread and the
    threads argon2 starts for its lanes inherit it; elsewhere, or where refused, hashing simply
    keeps normal priority."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICE)


class HashingGate:
    """Runs blocking hash calls on `workers` threads with at most `queue` more waiting.

    A call beyond that is refused at once with 503 and ``Retry-After``: a client retrying a
    second later is better served than one whose request waits for seconds behind a storm.
    A call that has waited `max_wait_s` in the queue without a thread is refused the same way:
    hashes run at the lowest priority, so while other routes keep the CPU busy they run slowly,
    and the queue's length alone would not bound the wait.
    """

    def __init__(self, *, workers: int, queue: int, max_wait_s: float = MAX_QUEUE_WAIT_S) -> None:
        self.workers = workers
        self.queue = queue
        self.max_wait_s = max_wait_s
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="argon2", initializer=lower_thread_priority
        )
        self._threads = asyncio.Semaphore(workers)
        self._admitted = 0

    def check_capacity(self) -> None:
        """Raise ServiceUnavailable now if a hash would be refused: a route calls it before
        its other work (a data-service read), so a refused request in a storm costs little."""
        if self._admitted >= self.workers + self.queue:
            raise _refused("Too many password checks at once; try again in a moment.")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a hashing thread. Raises ServiceUnavailable when the queue is full, or
        when no thread came free within `max_wait_s`.

        A hash counts (against the queue, and its thread against the workers) until it is done,
        not until its caller stops waiting: a request cancelled mid-hash (its deadline, the
        process ending) must not let another hash start beside the one still running, or the
        bound would not hold.
        """
        self.check_capacity()
        self._admitted += 1
        HASHES_IN_FLIGHT.inc()
        try:
            queued = time.monotonic()
            try:
                async with asyncio.timeout(self.max_wait_s):
                    await self._threads.acquire()
            except TimeoutError:
                raise _refused("Password checks are queued too long; try again in a moment.") from None
            finally:
                HASH_WAIT_SECONDS.observe(time.monotonic() - queued)
            try:
                job = self._executor.submit(fn, *args)
            except BaseException:
                self._threads.release()
                raise
        except BaseException:
            self._done()
            raise
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: _call_soon(loop, self._hash_done))
        return await asyncio.wrap_future(job)

    def _hash_done(self) -> None:
        self._threads.release()
        self._done()

    def _done(self) -> None:
        self._admitted -= 1
        HASHES_IN_FLIGHT.dec()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """`callback` on the loop, from the hashing thread; nothing once the loop is closed (the
    process is ending: no one is left to count)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
