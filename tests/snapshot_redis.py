"""A redis-server of a test's own that can lose its data the way a real one does: killed and
started again from its last save (a promoted replica that lagged, a restore), or from nothing
(a node restarted without persistence)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
from pathlib import Path

import coredis
import pytest


class SnapshotRedis:
    """A redis-server of its own in `directory`, which `snapshot` saves and `roll_back` kills
    (SIGKILL: nothing more is written) and starts again from that save."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.extra = extra
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._process = subprocess.Popen(  # a fixed program, the test's own arguments
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                return
            await asyncio.sleep(0.05)
        pytest.fail("redis-server did not start")

    async def snapshot(self) -> None:
        client: coredis.Redis[str] = coredis.Redis.from_url(self.url, decode_responses=True)
        async with client:
            await client.save()

    async def roll_back(self) -> None:
        self.stop()
        await self.start()

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
            self._process = None
