"""Sessions end when they should (contract §4): a logout or a refresh-token replay ends the
session's access tokens at once, on every instance; a login or refresh that overlaps a change
to the account never yields tokens that outlive the change.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

import plugins.auth.services
from tests.integration.conftest import (
    REFRESH_GRACE_S,
    Client,
    StackFactory,
    admin_headers,
    assert_problem,
    bearer,
    login,
    register,
)
from tests.integration.test_cache import CountingProxy

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
PASSWORD = "correct-horse-1"


async def test_logout_ends_that_sessions_access_token_at_once(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    phone, laptop = await login(client, "ann@example.com", PASSWORD), await login(client, "ann@example.com", PASSWORD)
    resp = await client.post(LOGOUT, json={"refresh_token": phone["refresh_token"]}, headers=bearer(phone))
    assert resp.status == 204
    await assert_problem(await client.get(ME, headers=bearer(phone)), 401)
    assert (await client.get(ME, headers=bearer(laptop))).status == 200  # the other session lives


async def test_a_login_past_the_sessions_a_user_may_have_ends_the_least_used_one(
    stack: StackFactory, token_state: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unbounded, a script with the password made thousands, and every list walked them all.
    monkeypatch.setattr(plugins.auth.services, "MAX_SESSIONS_PER_USER", 3)
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    oldest, used, third = [await login(client, "ann@example.com", PASSWORD) for _ in range(3)]
    await asyncio.sleep(0.01)
    resp = await client.post(REFRESH, json={"refresh_token": used["refresh_token"]})
    assert resp.status == 200  # used since: no longer the least recently used
    renewed = await resp.json()
    newest = await login(client, "ann@example.com", PASSWORD)
    await assert_problem(await client.get(ME, headers=bearer(oldest)), 401)
    await assert_problem(await client.post(REFRESH, json={"refresh_token": oldest["refresh_token"]}), 401)
    for tokens in (renewed, third, newest):
        assert (await client.get(ME, headers=bearer(tokens))).status == 200
    listed = await (await client.get("/api/v1/auth/sessions", headers=bearer(newest))).json()
    assert len(listed["items"]) == 3


async def test_a_refresh_replay_ends_the_sessions_access_tokens(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    first = await login(client, "ann@example.com", PASSWORD)
    second = await (await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})).json()
    assert (await client.get(ME, headers=bearer(second))).status == 200
    await asyncio.sleep(REFRESH_GRACE_S + 0.1)  # a replay, not a retry
    await assert_problem(await client.post(REFRESH, json={"refresh_token": first["refresh_token"]}), 401)
    for tokens in (first, second):
        await assert_problem(await client.get(ME, headers=bearer(tokens)), 401)


async def test_a_logout_on_one_instance_is_refused_by_the_other_at_once(stack: StackFactory, redis_db: str) -> None:
    one, other = await stack(redis_url=redis_db), await stack(redis_url=redis_db)
    await register(one, "ann@example.com")
    tokens = await login(one, "ann@example.com", PASSWORD)
    for _ in range(3):  # the other instance has the session in its local mirror
        assert (await other.get(ME, headers=bearer(tokens))).status == 200
    resp = await one.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]}, headers=bearer(tokens))
    assert resp.status == 204
    await assert_problem(await other.get(ME, headers=bearer(tokens)), 401)


class HoldingProxy(CountingProxy):
    """Forwards to the data service; once `armed`, holds the answer of the next read matching
    `pattern` until `release`, so a change can land between that read and what follows it."""

    def __init__(self, target: str, pattern: str) -> None:
        super().__init__(target)
        self.pattern = re.compile(pattern)
        self.armed = False
        self.read_answered = asyncio.Event()
        self.release = asyncio.Event()

    async def _forward(self, request: web.Request) -> web.Response:
        response = await super()._forward(request)
        if self.armed and request.method == "GET" and self.pattern.fullmatch(request.path_qs):
            self.armed = False
            self.read_answered.set()
            await self.release.wait()
        return response


CHANGES = {
    "password": {"password": "a-new-password-2"},
    "deactivation": {"is_active": False},
    "roles": {"roles": ["user", "auditor"]},
}


async def _held_stack(
    stack: StackFactory, aiohttp_server: AiohttpServer, dataservice: str, pattern: str, overrides: dict[str, Any]
) -> tuple[Client, HoldingProxy]:
    holding = HoldingProxy(dataservice, pattern)
    server = await aiohttp_server(holding.app)
    client = await stack(data_service_url=str(server.make_url("/")).rstrip("/"), **overrides)
    return client, holding


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_login_overlapping_an_account_change_yields_no_live_session(
    change: str, stack: StackFactory, aiohttp_server: AiohttpServer, dataservice: str, token_state: dict[str, Any]
) -> None:
    client, holding = await _held_stack(stack, aiohttp_server, dataservice, r"/api/v1/users\?email=.*", token_state)
    user = await register(client, "ann@example.com")
    admin = await admin_headers(client)
    holding.armed = True
    racing = asyncio.create_task(client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD}))
    await asyncio.wait_for(holding.read_answered.wait(), 10)  # the login holds the old record
    patched = await client.patch(f"/api/v1/users/{user['id']}", json=CHANGES[change], headers=admin)
    assert patched.status == 200, await patched.text()
    holding.release.set()
    resp = await racing
    if resp.status == 200:  # whatever it got must already be dead
        tokens = await resp.json()
        await assert_problem(await client.get(ME, headers=bearer(tokens)), 401)
        await assert_problem(await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}), 401)
    else:
        await assert_problem(resp, 401)


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_refresh_overlapping_an_account_change_yields_no_live_tokens(
    change: str, stack: StackFactory, aiohttp_server: AiohttpServer, dataservice: str, token_state: dict[str, Any]
) -> None:
    client, holding = await _held_stack(stack, aiohttp_server, dataservice, r"/api/v1/users/\d+", token_state)
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    admin = await admin_headers(client)
    holding.armed = True
    racing = asyncio.create_task(client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}))
    await asyncio.wait_for(holding.read_answered.wait(), 10)  # the refresh holds the old record
    patched = await client.patch(f"/api/v1/users/{user['id']}", json=CHANGES[change], headers=admin)
    assert patched.status == 200, await patched.text()
    holding.release.set()
    resp = await racing
    if resp.status == 200:
        new = await resp.json()
        await assert_problem(await client.get(ME, headers=bearer(new)), 401)
        await assert_problem(await client.post(REFRESH, json={"refresh_token": new["refresh_token"]}), 401)
    else:
        await assert_problem(resp, 401)
    await assert_problem(await client.get(ME, headers=bearer(tokens)), 401)
