"""Running the server: one process, or N with SO_REUSEPORT; SIGTERM drains (contract §12),
SIGHUP reloads the pipelines file (contract §10, app/reload.py).

Drain: /readyz turns 503 while the listener stays open for the drain bound, so load
balancers stop sending; then the listener closes, in-flight requests get up to
IN_FLIGHT_GRACE_S to finish, the app's cleanup (publisher flush, clients) runs, and the
process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiohttp import web

from app.collector import freeze_long_lived, tune_thresholds
from app.connection_limits import ConnectionLimits, default_max_connections
from app.keys import readiness_key
from app.main import create_app
from app.metrics import MULTIPROC_ENV, count_worker_restart
from app.proxies import trusted_proxies_key
from app.readiness import Phase
from app.reload import reload_on_signal
from app.settings import Settings
from app.supervisor import Supervisor

log = logging.getLogger("turnstile.serve")

IN_FLIGHT_GRACE_S = 5.0


class CannotListen(Exception):
    """The address to serve on is taken or not this host's: the process cannot start."""


def use_fast_loop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415  # optional: only where the platform has it

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    loop = asyncio.get_running_loop()
    # Handled from the first moment: SIGHUP's default action ends the process, and a reload
    # asked for during start-up runs once the server is up.
    hangups = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hangups.set)
    app = create_app(settings)
    count_worker_restart()
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=IN_FLIGHT_GRACE_S,
                           keepalive_timeout=settings.keepalive_timeout_s)
    await runner.setup()
    assert runner.server is not None  # made by setup()
    ConnectionLimits(
        total=settings.max_connections or default_max_connections(),
        per_client=settings.max_connections_per_client,
        trusted=app[trusted_proxies_key],
    ).install(runner.server)
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        # Another process on the port, or an address this host does not have: say so in one
        # line, after closing what start-up opened (clients, the embedded data service).
        await runner.cleanup()
        # errno's own words: uvloop's message repeats the address around them
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        msg = f"cannot listen on {settings.host}:{settings.port}: {reason}"
        raise CannotListen(msg) from None
    log.info("listening on http://%s:%s", settings.host, settings.port)
    tune_thresholds()
    freeze_long_lived("after start-up")
    reloads = asyncio.create_task(
        reload_on_signal(app, hangups, after_reload=lambda: freeze_long_lived("after the reload"))
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        reloads.cancel()  # no reload while draining
        app[readiness_key].phase = Phase.DRAINING
        log.info("draining for %.1fs: /readyz answers 503, requests are still served", settings.drain_seconds)
        await asyncio.sleep(settings.drain_seconds)
    finally:
        reloads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloads
        await runner.cleanup()
        log.info("stopped")


def run_workers(settings: Settings, argv: Sequence[str], workers: int) -> int:
    """Start `workers` processes sharing the port through SO_REUSEPORT; forward signals
    (SIGTERM and SIGINT stop every worker, SIGHUP makes each reload the pipelines file).

    The workers keep their metrics in files of one directory (prometheus_client's
    multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`), and each one's /metrics answers the sum of
    all: a scrape reaches whichever worker the kernel picks, and without it every scrape would
    show another worker's counters, going back and forth.
    """
    command = [sys.executable, "-m", "app", *argv, "--workers", "1", "--reuse-port"]
    with metrics_directory() as directory:
        return Supervisor(command, {**os.environ, MULTIPROC_ENV: str(directory)}, directory, workers).run()


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """The workers' metrics directory: `PROMETHEUS_MULTIPROC_DIR` when set (emptied first: files
    of an earlier run would be counted again), else a fresh temporary one, removed at the end."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="turnstile-metrics-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
