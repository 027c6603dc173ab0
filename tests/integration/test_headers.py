"""Response headers a strict client and a scanner see (contract §4): answers that carry a user or
a token are `Cache-Control: no-store`, and no response names the server's software versions.
Requests aiohttp refuses itself (not HTTP, a header too long) are problems too (contract §5)."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientResponse

from tests.integration.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    StackFactory,
    admin_headers,
    bearer,
)

SERVER = "turnstile"
LEAKY = ("aiohttp", "python", "cpython", "uvloop")


def assert_anonymous(resp: ClientResponse, what: str) -> None:
    """No header of `resp` names the software (or its version) behind it."""
    assert resp.headers.get("Server") == SERVER, what
    for name, value in resp.headers.items():
        assert not any(word in value.lower() for word in LEAKY), f"{what}: {name}: {value}"


async def raw_exchange(host: str, port: int, request: bytes, status: int = 400) -> tuple[dict[str, str], bytes]:
    """Send bytes no HTTP client would send; the answer's headers (lower-cased names) and body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines if line)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    finally:
        writer.close()
    assert f" {status} " in line, line
    return headers, body


SECRET = b"S3cret-Leak-Pw"
MALFORMED = (
    b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    # A login whose chunk framing is broken (LF after the size), and a bearer token with a stray
    # byte: aiohttp's refusal quotes the input, which holds a password and a token.
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3a\n{\"email\":\"ann@example.com\",\"password\":\""
    + SECRET + b"\"}\r\n0\r\n\r\n",
    b"GET /api/v1/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eyJ" + SECRET + b"\x7f\r\n\r\n",
    b"NOT-HTTP\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"<script>" * 2000 + b"\r\n\r\n",  # over 8190 bytes
    b"GET /" + b"9" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
)


async def test_pipeline_answers_with_users_or_tokens_are_no_store(stack: StackFactory) -> None:
    client = await stack()
    seen: list[tuple[str, ClientResponse]] = []

    async def call(label: str, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        resp = await client.request(method, path, **kwargs)
        assert resp.status == expect, f"{label}: {await resp.text()}"
        seen.append((label, resp))
        return await resp.json(content_type=None)

    user = await call("register", "POST", "/api/v1/auth/register", 201,
                      json={"email": "ann@example.com", "password": "correct-horse-1"})
    tokens = await call("login", "POST", "/api/v1/auth/login", 200,
                        json={"email": "ann@example.com", "password": "correct-horse-1"})
    await call("login form", "POST", "/api/v1/auth/login", 200,
               data={"grant_type": "password", "username": "ann@example.com", "password": "correct-horse-1"})
    tokens = await call("refresh", "POST", "/api/v1/auth/refresh", 200, json={"refresh_token": tokens["refresh_token"]})
    await call("me", "GET", "/api/v1/auth/me", 200, headers=bearer(tokens))
    await call("read, miss", "GET", f"/api/v1/users/{user['id']}", 200, headers=bearer(tokens))
    await call("read, hit", "GET", f"/api/v1/users/{user['id']}", 200, headers=bearer(tokens))
    assert seen[-1][1].headers["X-Cache"] == "HIT"
    await call("patch", "PATCH", f"/api/v1/users/{user['id']}", 200, json={"full_name": "Ann"}, headers=bearer(tokens))
    admin = await admin_headers(client)
    await call("create", "POST", "/api/v1/users", 201, headers=admin,
               json={"email": "bob@example.com", "password": "correct-horse-2"})
    await call("list", "GET", "/api/v1/users", 200, headers=admin)
    await call("read another, 403", "GET", f"/api/v1/users/{user['id'] + 1}", 403, headers=bearer(tokens))
    await call("bad login, 401", "POST", "/api/v1/auth/login", 401,
               json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD + "x"})
    for label, resp in seen:
        assert resp.headers.get("Cache-Control") == "no-store", label
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", label


async def test_operational_answers_are_left_to_their_own_caching(stack: StackFactory) -> None:
    client = await stack()
    for path in ("/healthz", "/api/docs/swagger.json"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert "Cache-Control" not in resp.headers, path


async def test_no_answer_names_the_server_software(stack: StackFactory) -> None:
    client = await stack()
    admin = await admin_headers(client)
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/metrics", {}),
        ("GET", "/api/docs", {}),
        ("GET", "/api/docs/swagger.json", {}),
        ("GET", "/api/docs/static/swagger-ui.css", {}),
        ("GET", "/no/such/route", {}),  # 404 from the router
        ("DELETE", "/healthz", {}),  # 405 from the router
        ("GET", "/api/v1/auth/me", {}),  # 401
        ("POST", "/api/v1/auth/register", {"data": b"{", "headers": {"Content-Type": "application/json"}}),  # 400
        ("POST", "/api/v1/auth/register", {"json": {"email": "x"}}),  # 422
        ("GET", "/api/v1/users", {"headers": admin}),
    ]
    for method, path, kwargs in requests:
        resp = await client.request(method, path, **kwargs)
        await resp.read()
        assert_anonymous(resp, f"{method} {path} -> {resp.status}")


async def test_malformed_requests_answered_by_aiohttp_itself_name_no_version(stack: StackFactory) -> None:
    client = await stack()
    for request in MALFORMED:
        headers, _ = await raw_exchange(str(client.host), int(client.port or 0), request)
        assert headers["server"] == SERVER, headers


async def test_requests_aiohttp_refuses_itself_are_problems_and_log_no_error(
    stack: StackFactory, caplog: Any
) -> None:
    client = await stack()
    with caplog.at_level(logging.INFO):
        for request in MALFORMED:
            headers, body = await raw_exchange(str(client.host), int(client.port or 0), request)
            assert headers["content-type"] == "application/problem+json", headers
            problem = json.loads(body)
            assert problem["status"] == 400
            assert problem["type"].endswith("/malformed-request")
            assert problem["request_id"] == headers["x-request-id"]
            # Nothing of the input is quoted back (the generated request id is random hex, which
            # may hold "999" by chance: it is left out of the look).
            quoted = body.replace(problem["request_id"].encode(), b"")
            assert b"script" not in quoted
            assert b"999" not in quoted
    refused = [r for r in caplog.records if r.getMessage().startswith("refused a malformed HTTP request")]
    assert len(refused) == len(MALFORMED)
    # Each line carries the id its answer gave the client, in its own field too.
    assert all(record.__dict__["request_id"] in record.getMessage() for record in refused)
    # Nothing of the input is quoted in the log either: a password, a token.
    assert not [r.getMessage() for r in caplog.records if SECRET.decode() in r.getMessage()]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_reference_data_service_names_no_version(dataservice: str) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/api/v1/users/1", "/nowhere"):
            async with session.get(dataservice + path) as resp:
                assert_anonymous(resp, path)
    parts = urlsplit(dataservice)
    for request in MALFORMED:
        headers, body = await raw_exchange(str(parts.hostname), int(parts.port or 0), request)
        assert headers["server"] == SERVER, headers
        assert json.loads(body)["status"] == 400


async def test_the_metrics_name_no_interpreter_version(stack: StackFactory) -> None:
    client = await stack()
    text = await (await client.get("/metrics")).text()
    assert "python_info" not in text
    assert platform.python_version() not in text
    assert "process_resident_memory_bytes" in text  # the process's own numbers stay


async def test_an_expectation_other_than_100_continue_is_a_417_problem_like_any_error(
    stack: StackFactory, caplog: Any
) -> None:
    # aiohttp answered it itself, before any middleware: text/plain, the value echoed, no
    # request id, no log line.
    client = await stack()
    request = (b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\nX-Request-ID: expect-1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2\r\nExpect: <b>hi</b>\r\n"
               b"Connection: close\r\n\r\n{}")
    with caplog.at_level(logging.INFO, logger="turnstile.access"):
        headers, body = await raw_exchange(str(client.host), int(client.port or 0), request, status=417)
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-request-id"] == "expect-1"
    problem = json.loads(body)
    assert (problem["status"], problem["request_id"]) == (417, "expect-1")
    assert b"<b>" not in body
    assert any("417" in record.getMessage() for record in caplog.records if record.name == "turnstile.access")


async def test_100_continue_is_still_answered_before_the_body(stack: StackFactory) -> None:
    client = await stack()
    resp = await client.post("/api/v1/auth/register", json={"email": "ann@example.com", "password": "correct-horse-1"},
                             expect100=True)
    assert resp.status == 201
