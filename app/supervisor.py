"""The parent of `turnstile serve --workers N`: starts the workers, passes signals on, and
notices every worker's end.

- Signals are handled before the first worker starts. SIGTERM and SIGINT stop the workers that
  run and any not started yet; SIGHUP goes to every worker, which reloads its pipelines file.
- A worker starts with SIGHUP ignored until its event loop handles it (a reload asked for while
  it starts must not end it), and dies with the supervisor (PR_SET_PDEATHSIG: a supervisor
  killed outright leaves no workers serving on the port, unmanaged).
- A worker that ends while nobody asked (a crash, the OOM killer) is logged and started again;
  one that keeps ending (RESTART_LIMIT times within RESTART_WINDOW_S) stops the service, with a
  non-zero exit code, rather than a restart loop. Each ended worker's gauges leave the shared
  metrics (prometheus_client's live gauges), or a dead worker's open circuit would be reported
  for good.
- The exit code is non-zero when a worker ended by a signal or with an error, at the stop or
  before it (even one started again): a wrapper (systemd's Restart=on-failure) sees a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Final, final

from prometheus_client import multiprocess

from app.workers import RESTARTED_ENV, WORKER_ENV, WORKERS_ENV, write_worker_pids

log = logging.getLogger("turnstile.serve")

RESTART_LIMIT: Final = 5
RESTART_WINDOW_S: Final = 60.0
_PR_SET_PDEATHSIG: Final = 1


def _start_in_child() -> None:
    """Runs in each worker between fork and exec (the supervisor starts no thread)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited across exec until the loop handles it
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def exit_code(returncode: int) -> int:
    """A child's end as a shell reports it: its code, or 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


@final
class Supervisor:
    def __init__(self, command: list[str], env: dict[str, str], metrics_dir: Path, workers: int) -> None:
        self.command = command
        self.env = env
        self.metrics_dir = metrics_dir
        self.workers = workers
        self.running: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}  # pid -> (number, process)
        self.stopping = False
        self.failed = False
        self.crashed = False  # a worker ended while nobody asked (started again)
        self.codes: list[int] = []
        self._restarts: deque[float] = deque()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        for number in range(1, self.workers + 1):
            if self.stopping:  # a stop during start-up: start no more
                break
            self._start(number)
        while self.running:
            pid, status = os.waitpid(-1, 0)
            if pid in self.running:
                self._ended(pid, os.waitstatus_to_exitcode(status))
        stopped = max((exit_code(code) for code in self.codes), default=0)
        return max(stopped, 1) if self.failed or self.crashed else stopped

    def _start(self, number: int, *, restarted: str | None = None) -> None:
        env = {**self.env, WORKER_ENV: str(number), WORKERS_ENV: str(self.workers)}
        if restarted is not None:
            env[RESTARTED_ENV] = restarted  # counted by the new worker, in the shared metrics
        process = subprocess.Popen(self.command, env=env, preexec_fn=_start_in_child)  # noqa: S603, PLW1509  # our own program; no thread runs here
        self.running[process.pid] = (number, process)
        self._record_pids()
        if self.stopping:
            # The stop came while it was being started (its handler ran before the line above,
            # so it was not told): it stops too.
            os.kill(process.pid, signal.SIGTERM)

    def _record_pids(self) -> None:
        with contextlib.suppress(OSError):  # the process metrics miss a worker; nothing else does
            write_worker_pids(self.metrics_dir, {number: pid for pid, (number, _p) in self.running.items()})

    def _ended(self, pid: int, returncode: int) -> None:
        number, process = self.running.pop(pid)
        self._record_pids()
        process.returncode = returncode  # reaped here: Popen must not wait for it again
        # Its live gauges leave the sums; its counters stay in the totals.
        multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]  # unannotated
        if self.stopping:
            # Ended by the stop signal itself (one still starting has no handler yet): a stop.
            self.codes.append(0 if -returncode in (signal.SIGTERM, signal.SIGINT) else returncode)
            return
        self.crashed = True
        how = f"by signal {-returncode}" if returncode < 0 else f"with code {returncode}"
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) > RESTART_LIMIT:
            log.error("worker %d (pid %d) ended %s, the %dth end in %.0f s: stopping the service",
                      number, pid, how, len(self._restarts), RESTART_WINDOW_S)
            self.failed = True
            self._stop(signal.SIGTERM, None)
            return
        log.error("worker %d (pid %d) ended %s; starting it again", number, pid, how)
        self._start(number, restarted="signal" if returncode < 0 else "error")

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        self._forward(signum, _frame)

    def _forward(self, signum: int, _frame: object) -> None:
        # os.kill, not Popen.send_signal: that polls first, and a worker it reaped would never
        # be seen by the loop's waitpid (which alone reaps them here).
        for pid in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
