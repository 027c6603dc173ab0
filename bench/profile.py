"""Sampling a server under load with py-spy (`--profile DIR`), and the top of what it saw."""

from __future__ import annotations

import collections
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def installed() -> bool:
    """Whether py-spy can be run: checked before the run, not when the first sample is due."""
    return Path(PY_SPY).is_file()


@contextlib.contextmanager
def sampled(pid: int, seconds: float, out: Path) -> Iterator[None]:
    """py-spy records `pid` (collapsed stacks, native frames off) while the block runs."""
    argv = [PY_SPY, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.wait(timeout=seconds + 60)


def summary(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive share of samples per function (file:function), most first."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples", "self%  incl%  function"]
    for frame, n in own.most_common(top):
        lines.append(f"{100 * n / samples:5.1f}  {100 * total[frame] / samples:5.1f}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "module.py:function"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    return f"{Path(path).name}:{name}" if path else name
