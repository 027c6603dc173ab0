"""One server process of a run (optionally pinned to a core), and what /proc says about a process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

ROOT: Final = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    msg = f"no VmRSS for process {pid}"
    raise RuntimeError(msg)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`, oldest first."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append((int(fields[19]), int(entry.name)))  # (start time, pid)
    return [child for _, child in sorted(found)]


class Server:
    """One child process (optionally pinned to a core), its log file and its port."""

    def __init__(self, name: str, argv: list[str], port: int, *, log: Path, env: Mapping[str, str],
                 core: str | None = None) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        pin = ["taskset", "-c", core] if core is not None else []
        self._log: IO[bytes] = log.open("wb")
        # taskset execs the program, so the pid is the server's own.
        self.proc = subprocess.Popen(
            [*pin, *argv], cwd=ROOT, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"{self.name} exited with {self.proc.returncode}; see its log:\n{self.tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(self.url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        msg = f"{self.name} not ready on {path} within {timeout_s:.0f} s:\n{self.tail()}"
        raise RuntimeError(msg)

    def wait_log(self, text: str, count: int, timeout_s: float = 60.0) -> None:
        """Wait until `text` appears `count` times in the log (each worker says it listens)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._log.flush()
            if self.log_path.read_text(errors="replace").count(text) >= count:
                return
            time.sleep(0.2)
        msg = f"{self.name} logged {text!r} fewer than {count} times within {timeout_s:.0f} s:\n{self.tail()}"
        raise RuntimeError(msg)

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def settle(self, timeout_s: float = 120.0) -> None:
        """Wait until the server is idle (< 5% of a core over 0.5 s): a scenario whose wrk run
        ended with requests in flight (argon2 queues) must not bill the next one."""
        deadline = time.monotonic() + timeout_s
        before = cpu_seconds(self.pid)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu_seconds(self.pid)
            if now - before < 0.025:
                return
            before = now
