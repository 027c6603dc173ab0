"""Cross-origin calls from browser apps (CORS_ALLOWED_ORIGINS): off by default; an allowed
origin's preflight is answered and its answers, problems included, name it; others get nothing."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.fixtures import sample_plugin

Client = TestClient[web.Request, web.Application]
APP = "https://app.example.com"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


async def _client(turnstile: StartService, origins: str | None) -> Client:
    env = {"CORS_ALLOWED_ORIGINS": origins} if origins is not None else {}
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False, env=env)
    return service.client


async def test_off_unless_origins_are_configured(turnstile: StartService) -> None:
    client = await _client(turnstile, None)
    resp = await client.get("/things/a", headers={"Origin": APP})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = await client.options("/widgets/1", headers={"Origin": APP, **PREFLIGHT})
    assert preflight.status == 405


async def test_an_allowed_origins_preflight_and_answers_name_it(turnstile: StartService) -> None:
    client = await _client(turnstile, f"https://other.example.com, {APP}")
    preflight = await client.options("/widgets/1", headers={"Origin": APP, **PREFLIGHT})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")} >= {
        "authorization", "content-type"}
    assert "Access-Control-Allow-Credentials" not in preflight.headers  # bearer tokens, no cookies
    assert preflight.headers["X-Request-ID"]  # a logged request like any other

    ok = await client.post("/widgets/1", json={"name": "w", "size": 2}, headers={"Origin": APP})
    assert ok.status == 201
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    assert "Origin" in ok.headers.getall("Vary")
    problem = await client.get("/nowhere", headers={"Origin": APP})
    assert problem.status == 404
    assert problem.headers["Access-Control-Allow-Origin"] == APP  # the app can read the problem


async def test_other_origins_get_nothing(turnstile: StartService) -> None:
    client = await _client(turnstile, APP)
    evil = "https://evil.example.com"
    preflight = await client.options("/widgets/1", headers={"Origin": evil, **PREFLIGHT})
    assert preflight.status == 405
    assert "Access-Control-Allow-Origin" not in preflight.headers
    resp = await client.get("/things/a", headers={"Origin": evil})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_any_origin(turnstile: StartService) -> None:
    client = await _client(turnstile, "*")
    resp = await client.get("/things/a", headers={"Origin": "https://anywhere.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in resp.headers.getall("Vary", [])  # the same answer for every origin
    # ... and for a request without Origin too: a cached copy then serves the apps as well.
    plain = await client.get("/things/a")
    assert plain.headers["Access-Control-Allow-Origin"] == "*"


async def test_every_answer_varies_with_origin_and_the_headers_an_app_reads_are_exposed(
    turnstile: StartService,
) -> None:
    client = await _client(turnstile, APP)
    # Without Origin, or from another one: still "Vary: Origin", so no cache hands this answer
    # (which has no CORS headers) to the app.
    for headers in ({}, {"Origin": "https://evil.example.com"}):
        resp = await client.get("/things/a", headers=headers)
        assert "Origin" in resp.headers.getall("Vary", []), headers
    ok = await client.post("/widgets/1", json={"name": "w", "size": 2}, headers={"Origin": APP})
    exposed = {name.strip() for name in ok.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "Cache-Status", "Allow", "X-Request-ID", "X-Cache", "Retry-After"} <= exposed
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type,content-encoding,traceparent,tracestate"}
    preflight = await client.options("/widgets/1", headers={"Origin": APP, **asked})
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-encoding", "traceparent", "tracestate"} <= allowed
