"""The events page in a real browser (headless Chromium) against the running service: the
vendored renderer draws every channel, message and operation of the AsyncAPI document, and
the page asks nothing of another host."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from tests.asyncapi.chromium import load_page
from tests.integration.conftest import StackFactory

AUDIT_PLUGIN = "tests.asyncapi.audit_plugin"


async def test_the_page_renders_the_events_offline(
    stack: StackFactory, tmp_path: Path, audit_pipelines: Path, unique: str,
) -> None:
    client = await stack(pipelines_file=audit_pipelines, extra_plugins=(AUDIT_PLUGIN,))
    page_url = str(client.make_url("/api/docs/events"))
    page = await load_page(page_url, tmp_path)

    for key in ("user.created", "user.updated", "user.deleted", "audit.recorded"):
        assert f'id="message-{key}"' in page.dom, key
        assert f'id="operation-send-send.{key}"' in page.dom, key
    for subscription in ("user_changes", "audit_trail"):
        assert f'id="operation-receive-receive.{subscription}"' in page.dom
    assert f"test.{unique}.user-changes" in page.dom
    assert "AuditRecord" in page.dom

    origin = urlsplit(page_url).netloc
    assert {urlsplit(url).netloc for url in page.requests} == {origin}, page.requests
    paths = {urlsplit(url).path for url in page.requests}
    assert {"/api/docs/events", "/api/docs/asyncapi.json", "/api/docs/events/assets/index.js"} <= paths


async def test_a_request_to_another_host_would_be_seen(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """The check above can fail: a page that loads from a CDN is caught, though it cannot reach it."""

    async def cdn_page(request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            '<html><head><script src="https://cdn.example.net/renderer.js"></script></head>'
            '<body><img src="http://images.example.org/logo.png"><p id="here">here</p></body></html>'
        ))

    app = web.Application()
    app.router.add_get("/", cdn_page)
    server = await aiohttp_server(app)
    page = await load_page(str(server.make_url("/")), tmp_path)
    assert 'id="here"' in page.dom
    hosts = {urlsplit(url).hostname for url in page.requests}
    assert {"cdn.example.net", "images.example.org"} <= hosts
