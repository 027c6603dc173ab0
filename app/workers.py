"""Which worker of `turnstile serve --workers N` this process is, as the supervisor tells it.

A worker's share of the host is 1/N: what it sizes by the cores it may use (the password-hashing
pool) divides by N, or N workers would together run N times what the host has. Its log lines
name it, so a line (a stalled loop, an error) can be traced to the process that wrote it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

import attrs

WORKER_ENV: Final = "TURNSTILE_WORKER"  # this worker's number, 1 to N
WORKERS_ENV: Final = "TURNSTILE_WORKERS"  # N
# Set for a worker started again after one ended unasked: why that one ended ("signal", "error").
RESTARTED_ENV: Final = "TURNSTILE_WORKER_RESTARTED"
# In the metrics directory: each running worker's pid by its number, which the supervisor keeps
# up to date, so that whichever worker answers a scrape can report every worker's process.
PIDS_FILE: Final = "worker-pids.json"


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


def write_worker_pids(directory: Path, pids: dict[int, int]) -> None:
    """Record the running workers' pids (number -> pid), replacing the file whole."""
    temporary = directory / f".{PIDS_FILE}.tmp"
    temporary.write_text(json.dumps({str(number): pid for number, pid in sorted(pids.items())}))
    temporary.replace(directory / PIDS_FILE)


def read_worker_pids(directory: Path) -> dict[int, int]:
    """The running workers' pids by number; empty when the file is missing or unreadable."""
    try:
        recorded = json.loads((directory / PIDS_FILE).read_text())
        return {int(number): int(pid) for number, pid in recorded.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
