from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pytest_aiohttp import AiohttpClient

from app.clients.redis import RedisConnection
from app.errors import Unauthorized
from app.keys import actor_key, body_key, redis_key
from app.middlewares.errors import error_middleware
from app.pipeline.config import parse_route
from app.pipeline.types import Actor, BuildContext, OperationDoc, PipelineConfig
from app.proxies import NO_TRUSTED_PROXIES, TrustedProxies, trusted_proxies_key
from plugins.rate_limit import document
from plugins.rate_limit.config import RateLimitConfig
from plugins.rate_limit.step import build, counted_client, counter_key, limiter_key, make_counter
from tests.services import start_service, stop_service

PIPELINE = PipelineConfig(name="login", route=parse_route("POST /login"), steps=())
MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def _inner(request: web.Request) -> web.Response:
    # Answers as the body asks: {"answer": 401} is a refused credential, say.
    body = request.get(body_key) or {}
    status = int(body.get("answer", 200))
    if status == 401:
        msg = "Incorrect email or password."
        raise Unauthorized(msg)
    return web.json_response({"seen": body}, status=status)


def make_app(
    config: RateLimitConfig, redis: RedisConnection | None, proxies: TrustedProxies = NO_TRUSTED_PROXIES
) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[redis_key] = redis
    app[trusted_proxies_key] = proxies
    app[counter_key] = make_counter(app)
    step = build(config, BuildContext(app, PIPELINE))

    async def route(request: web.Request) -> web.StreamResponse:
        # What the rules gate does before a limiter keyed on the body: the validated,
        # normalised body (here: a JSON object with its email trimmed and lower-cased).
        if request.can_read_body:
            body = await request.json()
            if isinstance(body.get("email"), str):
                body["email"] = body["email"].strip().lower()
            request[body_key] = body
        if "actor" in request.query:
            request[actor_key] = Actor(user_id=int(request.query["actor"]), roles=("user",))
        return await step(request, _inner)

    app.router.add_post("/login", route)
    return app


@pytest.fixture(params=["redis", "memory"])
def make_client(request: pytest.FixtureRequest, aiohttp_client: AiohttpClient) -> MakeClient:
    redis: RedisConnection | None = request.getfixturevalue("redis_connection") if request.param == "redis" else None

    async def make(
        proxies: TrustedProxies = NO_TRUSTED_PROXIES, **settings: Any
    ) -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(make_app(RateLimitConfig(**settings), redis, proxies))

    return make


async def test_requests_past_the_limit_get_429_with_retry_after(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"ip-{unique}", limit=2, window_s=30)
    assert [(await client.post("/login", json={})).status for _ in range(2)] == [200, 200]
    refused = await client.post("/login", json={})
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    body = await refused.json()
    assert body["status"] == 429
    assert body["type"].endswith("/too-many-requests")


async def test_per_email_counts_one_address_however_written(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"email-{unique}", per="body.email", limit=2, window_s=30)
    for email in ("ada@example.com", "  Ada@Example.COM "):
        resp = await client.post("/login", json={"email": email, "password": "x"})
        assert resp.status == 200
        assert (await resp.json())["seen"]["email"] == "ada@example.com"  # the body as validated
    assert (await client.post("/login", json={"email": "ADA@example.com"})).status == 429
    assert (await client.post("/login", json={"email": "bob@example.com"})).status == 200


@pytest.mark.parametrize("body", [{"password": "x"}, {"email": None}, {}])
async def test_per_email_skips_bodies_without_the_field(
    make_client: MakeClient, unique: str, body: dict[str, Any]
) -> None:
    client = await make_client(name=f"email-{unique}", per="body.email", limit=1, window_s=30)
    for _ in range(3):
        assert (await client.post("/login", json=body)).status == 200


async def test_a_combined_key_counts_each_combination(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"ce-{unique}", per="client+body.email", limit=1, window_s=30)
    assert (await client.post("/login", json={"email": "ada@example.com"})).status == 200
    assert (await client.post("/login", json={"email": "bob@example.com"})).status == 200
    assert (await client.post("/login", json={"email": "ADA@example.com"})).status == 429


async def test_per_actor_counts_the_caller_and_skips_anonymous_requests(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"actor-{unique}", per="actor", limit=1, window_s=30)
    assert (await client.post("/login?actor=7", json={})).status == 200
    assert (await client.post("/login?actor=7", json={})).status == 429
    assert (await client.post("/login?actor=8", json={})).status == 200
    assert [(await client.post("/login", json={})).status for _ in range(3)] == [200, 200, 200]


async def test_counting_failures_lets_successes_through(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"fail-{unique}", per="body.email", count="failures", limit=2, window_s=30)
    ok = {"email": "ada@example.com"}
    assert [(await client.post("/login", json=ok)).status for _ in range(5)] == [200] * 5
    bad = {"email": "ada@example.com", "answer": 401}
    assert [(await client.post("/login", json=bad)).status for _ in range(3)] == [401, 401, 429]
    # Once locked, the right answer waits for the window too.
    refused = await client.post("/login", json=ok)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 30


async def test_counting_failures_counts_403_but_not_422(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"fail-{unique}", per="body.email", count="failures", limit=1, window_s=30)
    unprocessable = {"email": "ada@example.com", "answer": 422}
    assert [(await client.post("/login", json=unprocessable)).status for _ in range(3)] == [422] * 3
    forbidden = {"email": "ada@example.com", "answer": 403}
    assert [(await client.post("/login", json=forbidden)).status for _ in range(2)] == [403, 429]


async def test_parallel_failures_cannot_overshoot_the_limit(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"fail-{unique}", per="body.email", count="failures", limit=3, window_s=30)
    bad = {"email": "ada@example.com", "answer": 401}
    statuses = await asyncio.gather(*(client.post("/login", json=bad) for _ in range(12)))
    assert sorted(resp.status for resp in statuses) == [401] * 3 + [429] * 9


async def test_when_counts_only_requests_that_send_the_field(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"when-{unique}", per="actor", when="body.secret", count="failures",
                               limit=1, window_s=30)
    refused = {"answer": 403}
    # Without the field nothing is counted, not even a refusal: it is not a guess of `secret`.
    assert [(await client.post("/login?actor=7", json=refused)).status for _ in range(3)] == [403] * 3
    guess = {"secret": "wrong", "answer": 403}
    assert [(await client.post("/login?actor=7", json=guess)).status for _ in range(2)] == [403, 429]
    # Locked for what sends the field; the rest goes on.
    assert (await client.post("/login?actor=7", json={"secret": "right"})).status == 429
    assert (await client.post("/login?actor=7", json={})).status == 200


async def test_x_forwarded_for_is_ignored_unless_trusted(make_client: MakeClient, unique: str) -> None:
    client = await make_client(name=f"ip-{unique}", limit=1, window_s=30)
    assert (await client.post("/login", json={}, headers={"X-Forwarded-For": "203.0.113.1"})).status == 200
    assert (await client.post("/login", json={}, headers={"X-Forwarded-For": "203.0.113.2"})).status == 429


async def test_an_ipv6_client_is_counted_by_its_64_not_by_each_address(make_client: MakeClient, unique: str) -> None:
    # Behind a trusted proxy (the test client's peer is 127.0.0.1), as an ingress reports them.
    client = await make_client(TrustedProxies([ipaddress.ip_network("127.0.0.0/8")]),
                               name=f"ip-{unique}", limit=2, window_s=30)

    def sent_from(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    statuses = [(await client.post("/login", json={}, headers=sent_from(f"2001:db8:1:2::{n:x}"))).status
                for n in range(1, 4)]
    assert statuses == [200, 200, 429]  # three addresses of one /64: one client
    assert (await client.post("/login", json={}, headers=sent_from("2001:db8:1:3::1"))).status == 200
    assert (await client.post("/login", json={}, headers=sent_from("203.0.113.7"))).status == 200


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        ("", ""),
    ],
)
def test_counted_client(address: str, counted: str) -> None:
    assert counted_client(address) == counted


async def test_redis_keys_hold_no_raw_email(
    aiohttp_client: AiohttpClient, redis_connection: RedisConnection, unique: str
) -> None:
    name = f"email-{unique}"
    config = RateLimitConfig(name=name, per="body.email", limit=5, window_s=30)
    client = await aiohttp_client(make_app(config, redis_connection))
    await client.post("/login", json={"email": "Ada@Example.com"})  # normalised as validated
    keys = [key async for key in redis_connection.client.scan_iter(match=f"turnstile:rl:{name}:*")]
    assert keys == [limiter_key(name, "ada@example.com")]
    assert "ada" not in keys[0]


def _fail_open_count(name: str) -> float:
    return REGISTRY.get_sample_value("turnstile_rate_limit_fail_open_total", {"limiter": name}) or 0.0


async def test_requests_pass_while_redis_is_down(
    aiohttp_client: AiohttpClient, redis_connection: RedisConnection, unique: str
) -> None:
    name = f"ip-{unique}"
    client = await aiohttp_client(make_app(RateLimitConfig(name=name, limit=1, window_s=30), redis_connection))
    assert (await client.post("/login", json={})).status == 200
    await stop_service("redis")
    try:
        assert [(await client.post("/login", json={})).status for _ in range(3)] == [200, 200, 200]
        assert _fail_open_count(name) == 3
    finally:
        await start_service("redis")
    # Limiting resumes by itself once Redis is back (a fresh server: the count starts again).
    statuses: list[int] = []
    for _ in range(100):
        statuses.append((await client.post("/login", json={})).status)
        if statuses[-1] == 429:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 429


def test_document_adds_a_429_with_retry_after() -> None:
    doc = OperationDoc(PIPELINE)
    document(RateLimitConfig(name="login", per="client+body.email", count="failures", limit=5, window_s=60), doc)
    response = doc.to_dict()["responses"]["429"]
    assert "Too many failed attempts: more than 5 per 60 s per client address and `email`" in response["description"]
    assert "Retry-After" in response["headers"]


async def test_steps_with_one_name_share_one_count_in_memory(aiohttp_client: AiohttpClient) -> None:
    app = web.Application(middlewares=[error_middleware])
    app[redis_key] = None
    app[counter_key] = make_counter(app)
    config = RateLimitConfig(name="login-ip", limit=1, window_s=30)
    steps = [build(config, BuildContext(app, PIPELINE)) for _ in range(2)]

    async def first(request: web.Request) -> web.StreamResponse:
        return await steps[0](request, _inner)

    async def second(request: web.Request) -> web.StreamResponse:
        return await steps[1](request, _inner)

    app.router.add_post("/a", first)
    app.router.add_post("/b", second)
    client = await aiohttp_client(app)
    assert (await client.post("/a", json={})).status == 200
    assert (await client.post("/b", json={})).status == 429
