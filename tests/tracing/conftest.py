"""The service with tracing on, as an operator runs it: `turnstile serve` in its own process
(OpenTelemetry's provider and instrumentations are global to a process, so the test process
itself never turns them on), exporting to a real OTLP/HTTP receiver in the test process, in
front of the reference data service (through a proxy that records what reached it), the real
Redis and the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer
from multidict import CIMultiDict, CIMultiDictProxy

from tests.app.test_cli import free_port
from tests.integration.amqp_capture import remove_test_topology
from tests.integration.conftest import (  # noqa: F401  # fixtures, shared with the integration tests
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    JWT_SECRET,
    dataservice,
    pipelines_for,
    redis_db,
    stack,
)
from tests.services import ROOT, TEST_PYTHONPATH
from tests.tracing.otlp_receiver import OtlpReceiver


@attrs.frozen
class Received:
    """One call that reached the data service through the proxy."""

    method: str
    path: str
    headers: CIMultiDictProxy[str]


class RecordingProxy:
    """Forwards to the reference data service and keeps each call's method, path and headers."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.received: list[Received] = []
        self.app = web.Application()
        self.app.cleanup_ctx.append(self._session_ctx)
        self.app.router.add_route("*", "/{tail:.*}", self._forward)

    async def _session_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        self.session = aiohttp.ClientSession()
        yield
        await self.session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, CIMultiDictProxy(CIMultiDict(request.headers))))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        async with self.session.request(
            request.method, self.target + request.path_qs, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() == "content-type"}
            return web.Response(status=upstream.status, body=body, headers=kept)


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What an operator sets, tracing aside; OTEL_* of the test's own environment are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REDIS_", "RABBITMQ_", "SERVER_TIMING"))}
    env.update(
        PYTHONPATH=TEST_PYTHONPATH,
        HOST="127.0.0.1",
        TURNSTILE_VAR_DIR=str(tmp_path / "var"),
        TURNSTILE_DRAIN_SECONDS="0.1",
        JWT_SECRET=JWT_SECRET,
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="8",
        ARGON2_PARALLELISM="1",
        TURNSTILE_ADMIN_EMAIL=ADMIN_EMAIL,
        TURNSTILE_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    env.update(extra)
    return env


class ServiceProcess:
    """A running `turnstile serve`; `stop()` sends SIGTERM and says how long the exit took."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str) -> None:
        self.process = process
        self.base_url = base_url

    async def stop(self) -> float:
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)
        return time.monotonic() - started


@asynccontextmanager
async def running(env: dict[str, str], log: Path) -> AsyncIterator[ServiceProcess]:
    """`turnstile serve` with `env`, once it is ready; stopped at the end."""
    base = f"http://127.0.0.1:{env['PORT']}"
    with log.open("w") as out:
        process = subprocess.Popen(  # our own program
            [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        service = ServiceProcess(process, base)
        try:
            await _wait_ready(base, process, log)
            yield service
        finally:
            await service.stop()


@attrs.frozen
class TracedService:
    process: ServiceProcess
    receiver: OtlpReceiver
    proxy: RecordingProxy
    pipelines_file: Path
    exchange: str
    queue: str


ServiceFactory = Callable[..., Awaitable[TracedService]]


async def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the service exited with {process.returncode}:\n{await asyncio.to_thread(log.read_text)}")
            try:
                async with http.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"the service was not ready within 30 s:\n{await asyncio.to_thread(log.read_text)}")


@pytest.fixture
async def traced_service(
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    *,
    dataservice: str,  # noqa: F811  # the fixture imported above
    redis_db: str,  # noqa: F811
    amqp_url: str,
    unique: str,
) -> AsyncIterator[ServiceFactory]:
    """`await traced_service(**env)`: the service running with tracing on (OTLP/HTTP to the
    receiver, a short batch delay), real Redis and RabbitMQ, its own exchange and queue."""
    receiver = OtlpReceiver()
    collector = await aiohttp_server(receiver.app)
    proxy = RecordingProxy(dataservice)
    upstream = await aiohttp_server(proxy.app)
    pipelines = pipelines_for(tmp_path, unique)
    async with contextlib.AsyncExitStack() as services:

        async def start(**extra: str) -> TracedService:
            settings = {
                "PORT": str(free_port()),
                "PIPELINES_FILE": str(pipelines),
                "DATA_SERVICE_URL": str(upstream.make_url("")).rstrip("/"),
                "REDIS_URL": redis_db,
                "RABBITMQ_URL": amqp_url,
                "EVENTS_EXCHANGE": f"test.{unique}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": str(collector.make_url("")).rstrip("/"),
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
            env = service_env(tmp_path, **(settings | extra))
            process = await services.enter_async_context(running(env, tmp_path / "service.log"))
            return TracedService(
                process, receiver, proxy, pipelines, f"test.{unique}", f"test.{unique}.user-changes"
            )

        yield start
    await remove_test_topology(amqp_url, unique)

