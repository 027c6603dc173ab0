"""Which worker of `turnstile serve --workers N` this process is, as the supervisor tells it.

A worker's share of the host is 1/N: what it sizes by the cores it may use (the password-hashing
pool) divides by N, or N workers would together run N times what the host has. Its log lines
name it, so a line (a stalled loop, an error) can be traced to the process that wrote it.
"""

from __future__ import annotations

import os
from typing import Final

import attrs

WORKER_ENV: Final = "TURNSTILE_WORKER"  # this worker's number, 1 to N
WORKERS_ENV: Final = "TURNSTILE_WORKERS"  # N


@attrs.frozen
class Worker:
    """This process is worker `number` (1 to `of`) of `turnstile serve --workers of`."""

    number: int
    of: int


def this_worker() -> Worker | None:
    """This process's place among the workers; None when it runs alone."""
    try:
        return Worker(int(os.environ[WORKER_ENV]), int(os.environ[WORKERS_ENV]))
    except (KeyError, ValueError):
        return None
