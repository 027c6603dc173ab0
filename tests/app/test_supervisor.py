"""`turnstile serve --workers N`'s parent as an operator meets it: a worker that dies is noticed
and started again, a reload asked for while the workers start ends none, a supervisor killed
outright leaves no worker serving."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.supervisor import exit_code
from tests.app.test_cli import cli_env, free_port
from tests.app.test_reload_process import fresh_connections, kill_orphans, serving, wait_ready
from tests.integration.amqp_capture import eventually
from tests.services import ROOT


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(child) for child in found.stdout.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@contextmanager
def serving_with_data(
    tmp_path: Path, redis_url: str, *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`serving` with `args` (`--workers N`: it needs a data service and Redis of its own)."""
    data_port = free_port()
    data = subprocess.Popen(
        [sys.executable, "-m", "app", "dataservice", "--port", str(data_port), "--db", str(tmp_path / "d.sqlite3")],
        env=cli_env(tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with serving(tmp_path, *args, REDIS_URL=redis_url, DATA_SERVICE_URL=f"http://127.0.0.1:{data_port}") as started:
            yield started
    finally:
        data.terminate()
        data.wait(10)


@pytest.mark.timeout(120)
async def test_a_worker_that_dies_is_logged_and_started_again(tmp_path: Path, redis_url: str) -> None:
    with serving_with_data(tmp_path, redis_url, "--workers", "2") as (proc, base, log_path):
        async with fresh_connections() as http:
            await wait_ready(http, base, proc)
            first = children(proc.pid)
            assert len(first) == 2
            os.kill(first[0], signal.SIGKILL)  # the OOM killer, say
            def replaced() -> bool:
                now = children(proc.pid)
                return first[0] not in now and len([pid for pid in now if alive(pid)]) == 2

            await until(replaced, 30, "the dead worker replaced")
            assert not alive(first[0])  # reaped, not a zombie
            await wait_ready(http, base, proc)
            # Whichever worker answers the scrape: the restart is counted (the container was not
            # restarted, so Kubernetes shows nothing), and every worker's process is reported.
            async def scrape() -> str:
                async with http.get(f"{base}/metrics", headers={"Connection": "close"}) as resp:
                    return await resp.text()

            restarted = 'turnstile_worker_restarts_total{reason="signal"} 1.0'

            async def counted() -> bool:  # by the new worker, as it starts
                return restarted in await scrape()

            await eventually(counted, 30, "the restart counted")
            for _ in range(4):
                metrics = await scrape()
                assert restarted in metrics
                for number in ("1", "2"):
                    assert f'process_resident_memory_bytes{{worker="{number}"}}' in metrics
                    assert f'process_open_fds{{worker="{number}"}}' in metrics
                    assert f'process_cpu_seconds_total{{worker="{number}"}}' in metrics
        log = log_path.read_text()
        assert f"(pid {first[0]}) ended by signal 9; starting it again" in log
    kill_orphans(first, str(tmp_path))


@pytest.mark.timeout(120)
async def test_a_reload_asked_for_while_the_workers_start_ends_none(tmp_path: Path, redis_url: str) -> None:
    with serving_with_data(tmp_path, redis_url, "--workers", "2") as (proc, base, _log_path):
        await until(lambda: len(children(proc.pid)) == 2, 30, "two workers started")
        proc.send_signal(signal.SIGHUP)  # before a worker's loop handles it (it ended them)
        async with fresh_connections() as http:
            await wait_ready(http, base, proc)
        assert len([p for p in children(proc.pid) if alive(p)]) == 2


@pytest.mark.timeout(120)
async def test_workers_end_with_a_supervisor_killed_outright(tmp_path: Path, redis_url: str) -> None:
    with serving_with_data(tmp_path, redis_url, "--workers", "2") as (proc, base, _log_path):
        async with fresh_connections() as http:
            await wait_ready(http, base, proc)
        workers = children(proc.pid)
        proc.kill()
        proc.wait(10)
        # They drain (SIGTERM) and end: none is left serving on the port, unmanaged.
        await until(lambda: not any(alive(pid) for pid in workers), 30, "the orphaned workers ended")
    kill_orphans(workers, str(tmp_path))


def test_a_worker_ended_by_a_signal_is_a_failure_in_the_exit_code() -> None:
    assert exit_code(0) == 0
    assert exit_code(3) == 3
    assert exit_code(-9) == 137  # as a shell reports SIGKILL


@pytest.mark.timeout(120)
async def test_a_stop_while_the_workers_start_stops_every_one(tmp_path: Path, redis_url: str) -> None:
    seen: set[int] = set()
    try:
        with serving_with_data(tmp_path, redis_url, "--workers", "6") as (proc, _base, _log_path):
            await until(lambda: len(children(proc.pid)) >= 1, 30, "a worker started")
            seen.update(children(proc.pid))
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)  # every worker, started or starting, stopped
            assert code == 0
    finally:
        kill_orphans(sorted(seen), str(tmp_path))
    assert not any(alive(pid) for pid in seen)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [("--workers", "2"), ()], ids=["supervisor", "one process"])
async def test_a_reload_asked_for_as_the_process_starts_ends_nothing(
    tmp_path: Path, redis_url: str, workers: tuple[str, ...]
) -> None:
    with serving_with_data(tmp_path, redis_url, *workers) as (proc, base, _log_path):
        await asyncio.sleep(0.15)  # Python is still importing the app: no handler of ours yet
        proc.send_signal(signal.SIGHUP)
        async with fresh_connections() as http:
            await wait_ready(http, base, proc)
        assert proc.poll() is None
