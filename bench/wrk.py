"""Running wrk on its own core with one of the Lua scripts in bench/lua, and reading its result."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Final

import attrs

LUA_DIR: Final = Path(__file__).resolve().parent / "lua"
WRK_CORE: Final = "1"
CONNECTIONS: Final = 64
_MARKER: Final = "BENCH_JSON "


@attrs.frozen
class Result:
    """What one wrk run measured (latencies in ms)."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    socket_errors: int
    last_ids: tuple[int, ...]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))


def installed() -> bool:
    return shutil.which("wrk") is not None and shutil.which("taskset") is not None


def run(url: str, script: str, args: list[str], seconds: float, *, timeout_s: float = 10.0,
        connections: int = CONNECTIONS) -> Result:
    """wrk with one thread and `connections` connections for `seconds`, pinned to WRK_CORE."""
    duration = f"{max(1, round(seconds))}s"
    argv = [
        "taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration}",
        f"--timeout={timeout_s:g}s", "-s", f"{script}.lua", url, "--", *args,
    ]
    # Run from the scripts' folder so `require "report"` finds report.lua.
    done = subprocess.run(
        argv, cwd=LUA_DIR, capture_output=True, text=True, timeout=seconds + timeout_s + 60, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARKER)]
    if done.returncode != 0 or not lines:
        msg = f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        raise RuntimeError(msg)
    data = json.loads(lines[-1].removeprefix(_MARKER))
    errors = data["errors"]
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        last_ids=tuple(int(i) for i in data["last_ids"]),
    )
