"""Running wrk on its own core with one of the Lua scripts in bench/lua, and reading its result."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import attrs

LUA_DIR: Final = Path(__file__).resolve().parent / "lua"
WRK_CORE: Final = "1"
CONNECTIONS: Final = 64
_MARKER: Final = "BENCH_JSON "


@attrs.frozen
class Result:
    """What one wrk run measured (latencies in ms).

    retry_after: how many 429 and 503 answers carried a `Retry-After` header.
    """

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    socket_errors: int
    last_ids: tuple[int, ...]
    retry_after: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    @property
    def refused(self) -> int:
        """429 and 503 answers: what a bounded server sends instead of queueing."""
        return self.statuses.get("429", 0) + self.statuses.get("503", 0)


def installed() -> bool:
    return shutil.which("wrk") is not None and shutil.which("taskset") is not None


@attrs.frozen
class Running:
    """A wrk process started by `start`; `finish` waits for it and reads its result."""

    proc: subprocess.Popen[str]
    deadline_s: float


def start(url: str, script: str, args: list[str], seconds: float, *, timeout_s: float = 10.0,
          connections: int = CONNECTIONS) -> Running:
    """wrk with one thread and `connections` connections for `seconds`, pinned to WRK_CORE."""
    duration = f"{max(1, round(seconds))}s"
    argv = [
        "taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration}",
        f"--timeout={timeout_s:g}s", "-s", f"{script}.lua", url, "--", *args,
    ]
    # Run from the scripts' folder so `require "report"` finds report.lua.
    proc = subprocess.Popen(argv, cwd=LUA_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Running(proc, seconds + timeout_s + 60)


def finish(running: Running) -> Result:
    try:
        stdout, stderr = running.proc.communicate(timeout=running.deadline_s)
    except BaseException:  # a timeout, or the run interrupted: no wrk may outlive it
        abandon(running)
        raise
    lines = [line for line in stdout.splitlines() if line.startswith(_MARKER)]
    if running.proc.returncode != 0 or not lines:
        msg = f"wrk failed ({running.proc.returncode}): {stderr.strip() or stdout.strip()}"
        raise RuntimeError(msg)
    return _parse(json.loads(lines[-1].removeprefix(_MARKER)))


def abandon(running: Running) -> None:
    """Stop a wrk process whose result is no longer wanted."""
    running.proc.kill()
    running.proc.communicate()


def run(url: str, script: str, args: list[str], seconds: float, *, timeout_s: float = 10.0,
        connections: int = CONNECTIONS) -> Result:
    """`start` then `finish`: one wrk run, waited for."""
    return finish(start(url, script, args, seconds, timeout_s=timeout_s, connections=connections))


def _parse(data: dict[str, Any]) -> Result:
    errors = data["errors"]
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        last_ids=tuple(int(i) for i in data["last_ids"]),
        retry_after=data["retry_after"],
    )
