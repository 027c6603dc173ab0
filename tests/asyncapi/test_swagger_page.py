"""The Swagger UI page in a real browser (headless Chromium): it renders this service's document
offline under its Content-Security-Policy, and a crafted link cannot make it show (or send a
password to) another document: Swagger UI 4.1.0 took ``?url=`` from the address (CVE-2021-46708)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from tests.asyncapi.chromium import load_page
from tests.integration.conftest import StackFactory

FOREIGN_SPEC = {
    "openapi": "3.0.3", "info": {"title": "Not this service", "version": "1"},
    "paths": {"/phishing": {"get": {"summary": "A foreign operation", "responses": {"200": {"description": "x"}}}}},
}


async def test_the_page_renders_this_services_document_offline(stack: StackFactory, tmp_path: Path) -> None:
    client = await stack()
    page_url = str(client.make_url("/api/docs"))
    page = await load_page(page_url, tmp_path)
    assert "/api/v1/users/{id}" in page.dom
    assert "opblock" in page.dom  # the operations are drawn
    origin = urlsplit(page_url).netloc
    assert {urlsplit(url).netloc for url in page.requests} == {origin}, page.requests


async def test_a_link_naming_another_document_shows_this_one(
    stack: StackFactory, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    async def spec(request: web.Request) -> web.Response:
        return web.json_response(FOREIGN_SPEC, headers={"Access-Control-Allow-Origin": "*"})

    foreign = web.Application()
    foreign.router.add_get("/spec.json", spec)
    elsewhere = await aiohttp_server(foreign)
    client = await stack()
    crafted = f"{client.make_url('/api/docs')}?url={elsewhere.make_url('/spec.json')}"

    page = await load_page(crafted, tmp_path)

    assert "A foreign operation" not in page.dom
    assert "/api/v1/users/{id}" in page.dom
    assert not [url for url in page.requests if urlsplit(url).netloc == f"127.0.0.1:{elsewhere.port}"]
