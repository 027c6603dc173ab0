"""SIGHUP to a real `turnstile serve`: one process, and --workers N (the parent forwards it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.app.test_cli import cli_env, free_port
from tests.services import ROOT

V1 = """\
[[pipelines]]
name = "get_thing"
route = "GET /things/{name}"
steps = [{ use = "tag", name = "v1" }, { use = "echo" }]

[[pipelines]]
name = "old_route"
route = "GET /old"
steps = [{ use = "echo" }]
"""

V2 = """\
[[pipelines]]
name = "get_thing"
route = "GET /things/{name}"
steps = [{ use = "tag", name = "v2" }, { use = "sleep", seconds = 0.01 }, { use = "echo" }]

[[pipelines]]
name = "new_route"
route = "GET /new"
steps = [{ use = "echo" }]
"""


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`turnstile serve` on a free port with V1; (process, base URL, its combined log file)."""
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(V1)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--pipelines", str(pipelines), *args],
            env=cli_env(tmp_path, TURNSTILE_DRAIN_SECONDS="0.2", **env), cwd=ROOT, stdout=log, stderr=log,
        )
    try:
        yield proc, f"http://127.0.0.1:{port}", log_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.asynccontextmanager
async def fresh_connections() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that opens a new connection per request, so SO_REUSEPORT spreads them over workers."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        yield http


async def wait_ready(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the server exited"
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        assert time.monotonic() < deadline, "the server did not become ready"
        await asyncio.sleep(0.1)


async def wait_for_hash(http: aiohttp.ClientSession, base: str, digest: str, *, times: int = 1) -> None:
    """Until /readyz shows `digest` `times` times in a row (more than once: several workers)."""
    deadline = time.monotonic() + 15
    seen = 0
    while seen < times:
        async with http.get(f"{base}/readyz") as resp:
            seen = seen + 1 if (await resp.json())["pipelines"]["sha256"] == digest else 0
        assert time.monotonic() < deadline, f"/readyz never showed {digest}"
        if seen < times:
            await asyncio.sleep(0.02 if seen else 0.1)


@pytest.mark.timeout(90)
async def test_sighup_reloads_under_load_with_no_error_answers(tmp_path: Path) -> None:
    with serving(tmp_path) as (proc, base, log_path):
        pipelines = tmp_path / "pipelines.toml"
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base, proc)
            statuses: dict[int, int] = {}
            trails: set[str] = set()
            stop = asyncio.Event()

            async def hammer() -> None:
                while not stop.is_set():
                    async with http.get(f"{base}/things/x") as resp:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                        trails.add(resp.headers.get("X-Trail", ""))

            load = [asyncio.create_task(hammer()) for _ in range(8)]
            for text in (V2, V1, V2, V1, V2):
                pipelines.write_text(text)
                proc.send_signal(signal.SIGHUP)
                await wait_for_hash(http, base, short_hash(text))
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*load)
            assert set(statuses) == {200}, statuses
            assert sum(statuses.values()) > 200
            assert trails == {"out:v1", "out:v2"}

            async with http.get(f"{base}/new") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/old") as resp:
                assert resp.status == 404
                assert resp.content_type == "application/problem+json"

            # A broken file: nothing changes, and the log names the file and line.
            pipelines.write_text(V1.replace('use = "tag"', 'use = "tga"'))
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "reload refused" not in log_path.read_text():
                assert time.monotonic() < deadline, "no reload refused line in the log"
                await asyncio.sleep(0.05)
            async with http.get(f"{base}/readyz") as resp:
                assert (await resp.json())["pipelines"]["sha256"] == short_hash(V2)
            async with http.get(f"{base}/new") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
            assert 'turnstile_config_reloads_total{outcome="ok"} 5.0' in metrics
            assert 'turnstile_config_reloads_total{outcome="invalid"} 1.0' in metrics
    log = log_path.read_text()
    assert f"{pipelines}:4: pipeline 'get_thing', step 1: unknown step type 'tga'" in log
    assert log.count(f"reloaded {pipelines} (sha256") == 5
    # What start-up left alive is frozen once, and again after each reload that swapped the
    # routes (so the old routes' objects are collected), not after the refused one.
    assert log.count("objects frozen after start-up") == 1
    assert log.count("objects frozen after the reload") == 5


def kill_orphans(pids: list[int], marker: str) -> None:
    """Kill the workers still running after their parent died (a failed test), never leave a
    server behind; only a process whose command line still names this test's files."""
    for pid in pids:
        with contextlib.suppress(OSError):  # gone already: nothing to do
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(120)
async def test_the_parent_forwards_sighup_to_every_worker(tmp_path: Path, redis_url: str) -> None:
    data_port = free_port()
    data = subprocess.Popen(
        [sys.executable, "-m", "app", "dataservice", "--port", str(data_port), "--db", str(tmp_path / "d.sqlite3")],
        env=cli_env(tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        with serving(tmp_path, "--workers", "2", REDIS_URL=redis_url,
                     DATA_SERVICE_URL=f"http://127.0.0.1:{data_port}") as (proc, base, log_path):
            async with fresh_connections() as http:
                await wait_ready(http, base, proc)
                await wait_for_hash(http, base, short_hash(V1), times=20)  # both workers are up
                found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False)
                workers = [int(pid) for pid in found.stdout.split()]
                assert len(workers) == 2
                (tmp_path / "pipelines.toml").write_text(V2)
                proc.send_signal(signal.SIGHUP)
                await wait_for_hash(http, base, short_hash(V2), times=30)
                for _ in range(30):
                    async with http.get(f"{base}/new") as resp:
                        assert resp.status == 200
            assert proc.poll() is None  # SIGHUP did not end the parent
        reloaded = [line for line in log_path.read_text().splitlines() if " reloaded " in line]
        assert len(reloaded) == 2  # one line per worker, each naming its worker
        assert {"worker=1" in line or '"worker": 1' in line for line in reloaded} == {True, False}
    finally:
        kill_orphans(workers, str(tmp_path))
        data.terminate()
        data.wait(10)
