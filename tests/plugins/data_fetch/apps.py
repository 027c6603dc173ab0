"""Helpers shared by the data-fetch and cache step tests: a pipelines file, the app, a fake upstream."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

import plugins.cache
import plugins.data_fetch
from app.main import create_app
from app.plugins import make_plugin_manager
from app.settings import Settings
from app.wiring import PROBE_PATH


def write_pipelines(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def make_client(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    pipelines: str,
    *,
    data_service_url: str,
    redis_url: str | None = None,
    extra: Iterable[object] = (),
    timeout_s: float = 5.0,
    retries: int = 0,
) -> TestClient[web.Request, web.Application]:
    settings = Settings(
        pipelines_file=write_pipelines(tmp_path, pipelines),
        var_dir=tmp_path / "var",
        data_service_url=data_service_url,
        data_service_timeout_s=timeout_s,
        data_service_retries=retries,
        redis_url=redis_url,
    )
    # Only the plugins under test: other built-ins (users, auth) must not change what is answered.
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.data_fetch, plugins.cache, *extra])
    return await aiohttp_client(create_app(settings, pm=pm))


def unused_port_url() -> str:
    """A URL nothing listens on: a data service that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@attrs.define
class FakeUpstream:
    """A scripted data service: counts calls, remembers what it was sent, answers `reply`."""

    calls: int = 0
    delay_s: float = 0.0
    status: int = 200
    body: bytes = b'{"id":7,"email":"a@example.com"}'  # compact: as orjson writes it back
    content_type: str = "application/json"
    seen: list[dict[str, Any]] = attrs.Factory(list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        raw = await request.read()
        self.seen.append({
            "method": request.method,
            "path": request.raw_path.partition("?")[0],
            "query": dict(request.query),
            "json": orjson.loads(raw) if raw else None,
            "request_id": request.headers.get("X-Request-ID"),
        })
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status == 204:
            return web.Response(status=204)
        return web.Response(status=self.status, body=self.body, content_type=self.content_type)


async def _no_such_user(_request: web.Request) -> web.Response:
    return web.Response(status=404)


def answer_probes(app: web.Application) -> None:
    """Answer the idle client's probe (app/wiring.py) as a data service would, apart from the
    calls a test scripts and counts. Add it before a catch-all route."""
    app.router.add_get(PROBE_PATH, _no_such_user)


async def start_fake(aiohttp_server: AiohttpServer, fake: FakeUpstream) -> str:
    app = web.Application()
    answer_probes(app)
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


