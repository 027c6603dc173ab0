"""GET /api/v1/users/{id} through the default pipelines' cache (contract §8), over real HTTP,
the reference data service, and the memory cache or the real Redis."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from tests.integration.amqp_capture import fresh_redis_db
from tests.integration.conftest import Client, StackFactory, admin_headers, bearer, login, register
from tests.services import redis_client, start_service, stop_service

PASSWORD = "correct-horse-1"
PROXY_DELAY_S = 0.3  # holds each user read so that concurrent misses overlap
CACHE_PREFIX = ""  # the cache keys are the pipelines file's own (contract §8: user:{id})

# RFC 9211 §2: an sf-list member is a cache name (sf-token or sf-string) with parameters.
_TOKEN = r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*"
_STRING = r'"(?:[^"\\]|\\.)*"'
_ONE_PARAM = rf";\s*([a-z*][a-z0-9_.*-]*)(?:=({_TOKEN}|{_STRING}|-?\d+|\?[01]))?"
_MEMBER = re.compile(rf"^(?:{_TOKEN}|{_STRING})((?:{_ONE_PARAM})*)$")
_PARAM = re.compile(_ONE_PARAM)
_FWD = {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}


def cache_status(value: str) -> dict[str, Any]:
    """The parameters of a one-member RFC 9211 Cache-Status; fails on anything invalid."""
    member = _MEMBER.match(value.strip())
    assert member, f"not an RFC 9211 Cache-Status member: {value!r}"
    params: dict[str, Any] = {}
    for name, raw in _PARAM.findall(member.group(1)):
        assert name not in params, f"{name} repeated in {value!r}"
        params[name] = True if raw in ("", "?1") else raw
    for flag in ("hit", "stored", "collapsed"):
        assert params.get(flag, True) is True, f"{flag} must be a boolean in {value!r}"
    if "fwd" in params:
        assert params["fwd"] in _FWD, value
        assert "hit" not in params, f"hit and fwd together in {value!r}"
    if "fwd-status" in params:
        assert re.fullmatch(r"\d{3}", params["fwd-status"]), value
    for integer in ("ttl",):
        if integer in params:
            assert re.fullmatch(r"-?\d+", params[integer]), value
    return params


def assert_hit(response: aiohttp.ClientResponse) -> None:
    assert response.headers["X-Cache"] == "HIT"
    assert cache_status(response.headers["Cache-Status"]).get("hit") is True


def assert_miss(response: aiohttp.ClientResponse, *, status: int = 200, stored: bool = True) -> None:
    assert response.headers["X-Cache"] == "MISS"
    params = cache_status(response.headers["Cache-Status"])
    assert params["fwd"] == "uri-miss"
    assert params["fwd-status"] == str(status)
    assert params.get("stored", False) is stored


@pytest.fixture(params=["memory", "redis"])
async def cached_stack(request: pytest.FixtureRequest, stack: StackFactory) -> Client:
    """The whole service on the embedded memory cache or on the real Redis."""
    if request.param == "memory":
        return await stack()
    return await stack(redis_url=await fresh_redis_db(request))


async def get_user(client: Client, user_id: int, headers: dict[str, str]) -> aiohttp.ClientResponse:
    response = await client.get(f"/api/v1/users/{user_id}", headers=headers)
    await response.read()
    return response


async def user_with_token(client: Client, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    user = await register(client, email, PASSWORD)
    return user, bearer(await login(client, email, PASSWORD))


async def test_get_user_misses_then_hits(cached_stack: Client) -> None:
    user, headers = await user_with_token(cached_stack, "ann@example.com")

    first = await get_user(cached_stack, user["id"], headers)
    second = await get_user(cached_stack, user["id"], headers)

    assert first.status == second.status == 200
    assert_miss(first)
    assert_hit(second)
    assert await second.json() == await first.json() == user
    assert second.content_type == "application/json"
    assert "password_hash" not in await second.json()


async def test_patch_invalidates_and_delete_makes_it_404(cached_stack: Client) -> None:
    user, headers = await user_with_token(cached_stack, "bob@example.com")
    assert_miss(await get_user(cached_stack, user["id"], headers))
    assert_hit(await get_user(cached_stack, user["id"], headers))

    patched = await cached_stack.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Bob B"}, headers=headers)
    assert patched.status == 200
    after_patch = await get_user(cached_stack, user["id"], headers)
    assert_miss(after_patch)  # found the tombstone; its answer replaced it
    assert (await after_patch.json())["full_name"] == "Bob B"
    cached = await get_user(cached_stack, user["id"], headers)
    assert_hit(cached)
    assert (await cached.json())["full_name"] == "Bob B"

    admin = await admin_headers(cached_stack)
    assert (await cached_stack.delete(f"/api/v1/users/{user['id']}", headers=admin)).status == 204
    gone = await get_user(cached_stack, user["id"], admin)
    assert gone.status == 404
    assert_miss(gone, status=404, stored=False)  # a 404 is not remembered (not_found_ttl_s = 0)


async def test_auth_runs_before_the_cache(cached_stack: Client) -> None:
    ann, ann_headers = await user_with_token(cached_stack, "ann@example.com")
    _, bob_headers = await user_with_token(cached_stack, "bob@example.com")
    assert_miss(await get_user(cached_stack, ann["id"], ann_headers))
    assert_hit(await get_user(cached_stack, ann["id"], ann_headers))

    other = await get_user(cached_stack, ann["id"], bob_headers)
    anonymous = await get_user(cached_stack, ann["id"], {})
    forged = await get_user(cached_stack, ann["id"], {"Authorization": "Bearer not-a-token"})

    assert other.status == 403
    assert anonymous.status == 401
    assert forged.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    for refused in (other, anonymous, forged):
        assert "X-Cache" not in refused.headers
        assert refused.content_type == "application/problem+json"
        assert "email" not in await refused.text()


class CountingProxy:
    """A data service stand-in that forwards to the real one and counts each call."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.calls: Counter[tuple[str, str]] = Counter()
        self.app = web.Application()
        self.app.cleanup_ctx.append(self._session_ctx)
        self.app.router.add_route("*", "/{tail:.*}", self._forward)

    async def _session_ctx(self, app: web.Application) -> AsyncIterator[None]:
        self.session = aiohttp.ClientSession()
        yield
        await self.session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        self.calls[(request.method, request.path)] += 1
        if request.method == "GET" and re.fullmatch(r"/api/v1/users/\d+", request.path):
            await asyncio.sleep(PROXY_DELAY_S)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        async with self.session.request(
            request.method, self.target + request.path_qs, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() in {"content-type", "x-request-id"}}
            return web.Response(status=upstream.status, body=body, headers=kept)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_fifty_concurrent_misses_make_one_data_service_call(
    backend: str, stack: StackFactory, aiohttp_server: AiohttpServer, dataservice: str, request: pytest.FixtureRequest
) -> None:
    counting = CountingProxy(dataservice)
    server = await aiohttp_server(counting.app)
    overrides: dict[str, Any] = {"data_service_url": str(server.make_url("/")).rstrip("/")}
    if backend == "redis":
        overrides["redis_url"] = await fresh_redis_db(request)
    client = await stack(**overrides)
    user, headers = await user_with_token(client, "ann@example.com")
    read = ("GET", f"/api/v1/users/{user['id']}")
    assert counting.calls[read] == 0

    responses = await asyncio.gather(*(get_user(client, user["id"], headers) for _ in range(50)))

    assert counting.calls[read] == 1
    assert [r.status for r in responses] == [200] * 50
    assert {r.headers["X-Cache"] for r in responses} == {"MISS"}
    statuses = [cache_status(r.headers["Cache-Status"]) for r in responses]
    assert sum(1 for s in statuses if s.get("collapsed")) == 49
    bodies = [await r.json() for r in responses]
    assert all(body == user for body in bodies)
    assert len({r.headers["X-Request-ID"] for r in responses}) == 50
    assert_hit(await get_user(client, user["id"], headers))
    assert counting.calls[read] == 1


class HoldingProxy(CountingProxy):
    """Forwards like CountingProxy; once `armed`, holds the next user read's answer until `release`."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.armed = False
        self.read_answered = asyncio.Event()
        self.release = asyncio.Event()

    async def _forward(self, request: web.Request) -> web.Response:
        response = await super()._forward(request)
        if self.armed and request.method == "GET" and re.fullmatch(r"/api/v1/users/\d+", request.path):
            self.armed = False
            self.read_answered.set()  # the data service has answered (the old record)
            await self.release.wait()
        return response


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_read_racing_a_patch_does_not_cache_the_old_record(
    backend: str, stack: StackFactory, aiohttp_server: AiohttpServer, dataservice: str, request: pytest.FixtureRequest
) -> None:
    holding = HoldingProxy(dataservice)
    server = await aiohttp_server(holding.app)
    overrides: dict[str, Any] = {"data_service_url": str(server.make_url("/")).rstrip("/")}
    if backend == "redis":
        overrides["redis_url"] = await fresh_redis_db(request)
    client = await stack(**overrides)
    user, headers = await user_with_token(client, "ann@example.com")
    holding.armed = True

    slow_read = asyncio.create_task(get_user(client, user["id"], headers))
    await asyncio.wait_for(holding.read_answered.wait(), 10)
    patched = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Ann New"}, headers=headers)
    assert patched.status == 200  # committed upstream, then cache-invalidate ran
    holding.release.set()
    raced = await slow_read  # the old record arrives after the invalidation

    assert (await raced.json())["full_name"] == user["full_name"]
    assert_miss(raced, stored=False)  # its add-if-absent met the tombstone
    after = await get_user(client, user["id"], headers)
    assert_miss(after)  # found the tombstone; its fresh answer replaced it
    assert (await after.json())["full_name"] == "Ann New"
    cached = await get_user(client, user["id"], headers)
    assert_hit(cached)
    assert (await cached.json())["full_name"] == "Ann New"


async def test_a_user_read_before_it_exists_is_found_once_created(stack: StackFactory, redis_db: str) -> None:
    # A 404 is not remembered by default: the next id, read before its user registers, must not
    # read as "not found" afterwards (by its owner least of all), and nothing that creates a
    # user could drop such a key, whose id only the data service's answer names.
    client = await stack(redis_url=redis_db)
    admin = await admin_headers(client)
    first, _ = await user_with_token(client, "ann@example.com")
    next_id = first["id"] + 1

    before = await get_user(client, next_id, admin)
    assert before.status == 404
    assert before.content_type == "application/problem+json"
    created, token = await user_with_token(client, "bob@example.com")
    assert created["id"] == next_id
    own = await get_user(client, next_id, token)
    assert own.status == 200
    assert_miss(own)
    async with redis_client(redis_db) as redis:
        found_ttl_ms = await redis.pttl(f"{CACHE_PREFIX}user:{next_id}")
    assert 3_500_000 < found_ttl_ms <= 3_600_000


@pytest.mark.timeout(120)
async def test_cache_bypasses_while_redis_is_down(stack: StackFactory, redis_db: str) -> None:
    client = await stack(redis_url=redis_db)
    user, headers = await user_with_token(client, "ann@example.com")
    assert_miss(await get_user(client, user["id"], headers))

    await stop_service("redis")
    try:
        bypass = await get_user(client, user["id"], headers)
        assert bypass.status == 200, await bypass.text()
        assert bypass.headers["X-Cache"] == "BYPASS"
        params = cache_status(bypass.headers["Cache-Status"])
        assert params["fwd"] == "bypass"
        assert params["fwd-status"] == "200"
        assert await bypass.json() == user
    finally:
        await start_service("redis")


@pytest.mark.timeout(120)
async def test_cache_comes_back_by_itself_after_a_redis_outage(stack: StackFactory, redis_db: str) -> None:
    client = await stack(redis_url=redis_db)
    user, headers = await user_with_token(client, "ann@example.com")
    assert_miss(await get_user(client, user["id"], headers))
    assert_hit(await get_user(client, user["id"], headers))

    await stop_service("redis")
    try:
        started = time.monotonic()
        during = await get_user(client, user["id"], headers)
        assert time.monotonic() - started < 3.0
        assert during.status == 200, await during.text()
        assert during.headers["X-Cache"] == "BYPASS"
    finally:
        await start_service("redis")

    # The Redis here keeps nothing on disk, so it came back empty: the sessions it held are
    # gone and the user signs in again (losing Redis data may cost live sessions, never
    # accept a revoked token). The cache then comes back by itself.
    headers = await sign_in_when_redis_answers(client, "ann@example.com", within_s=15)
    seen = await poll_until_hit(client, user["id"], headers, within_s=15)
    assert seen[-2:] == ["MISS", "HIT"], seen


async def sign_in_when_redis_answers(client: Client, email: str, within_s: float) -> dict[str, str]:
    """Bearer headers of a new login, retried while token state answers 503."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        resp = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        if resp.status == 200:
            return bearer(await resp.json())
        assert resp.status == 503, await resp.text()
        await asyncio.sleep(0.1)
    pytest.fail(f"no login within {within_s} s")


async def poll_until_hit(client: Client, user_id: int, headers: dict[str, str], within_s: float) -> list[str]:
    """X-Cache of each GET until a HIT (a 503 while Redis is still coming back counts as "503")."""
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        response = await get_user(client, user_id, headers)
        if response.status == 503:  # the pool is still redialing Redis: token state unknown
            seen.append("503")
            await asyncio.sleep(0.1)
            continue
        assert response.status == 200, await response.text()
        seen.append(response.headers["X-Cache"])
        if seen[-1] == "HIT":
            return seen
        await asyncio.sleep(0.1)
    pytest.fail(f"no HIT within {within_s} s: {seen}")
