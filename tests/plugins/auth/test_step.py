"""The auth plugin's steps on a small app: a real data service, the memory and the Redis token store."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

import plugins.auth
from app.errors import Conflict
from app.hookspecs import hookimpl
from app.keys import actor_key, body_key
from app.main import create_app
from app.models.events import Event
from app.models.schema import schema_field
from app.pipeline.config import PipelineFileError
from app.pipeline.types import Handler, StepKind, StepType, SubscriptionContext
from app.plugins import make_plugin_manager
from plugins.auth.passwords import Argon2Hasher
from plugins.auth.services import AuthServices, services_key
from plugins.auth.tokens import Tokens
from tests.plugins.auth.conftest import SECRET, cheap_settings, create_user

Client = TestClient[web.Request, web.Application]

PIPELINES = """
[[pipelines]]
name = "me"
route = "GET /me"
steps = [{ use = "auth", allow = ["authenticated"] }, { use = "echo" }]

[[pipelines]]
name = "admin_only"
route = "GET /admin"
steps = [{ use = "auth", allow = ["admin"] }, { use = "echo" }]

[[pipelines]]
name = "get_user"
route = "GET /users/{id}"
steps = [{ use = "auth", allow = ["self", "admin"] }, { use = "echo" }]

[[pipelines]]
name = "open"
route = "GET /open"
steps = [{ use = "auth", allow = ["anyone"] }, { use = "echo" }]

[[pipelines]]
name = "delete_user"
route = "DELETE /users/{id}"
steps = [{ use = "auth", allow = ["admin"] }, { use = "revoke-tokens", user = "{id}" }, { use = "echo" }]

[[pipelines]]
name = "patch_user"
route = "PATCH /users/{id}"
body = "UserPatch"
steps = [{ use = "auth", allow = ["self", "admin"] }, { use = "revoke-tokens", user = "{id}" }, { use = "echo" }]

[[pipelines]]
name = "login"
route = "POST /login"
body = "LoginRequest"
steps = [{ use = "login" }]

[[pipelines]]
name = "refresh"
route = "POST /refresh"
body = "RefreshRequest"
steps = [{ use = "refresh", grace_s = 0.3 }]

[[pipelines]]
name = "logout"
route = "POST /logout"
body = "RefreshRequest"
steps = [{ use = "auth", allow = ["authenticated"] }, { use = "logout" }]
"""


@attrs.frozen
class EchoConfig:
    pass


@attrs.frozen(kw_only=True)
class UserPatch:
    full_name: str = schema_field(description="name", default="")
    password: str = schema_field(description="password", default="")
    roles: list[str] = schema_field(description="roles", factory=list)
    is_active: bool = schema_field(description="active", default=True)
    fail: bool = schema_field(description="answer 409 instead", default=False)


async def _echo(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.get(body_key, {}).get("fail"):
        raise Conflict
    actor = request.get(actor_key)
    return web.json_response({"actor": None if actor is None else actor.user_id})


class EchoPlugin:
    @hookimpl
    def register_steps(self) -> list[StepType[Any]]:
        return [StepType(name="echo", config_cls=EchoConfig, build=lambda _c, _x: _echo, kind=StepKind.TERMINAL)]

    @hookimpl
    def register_models(self) -> list[type[Any]]:
        return [UserPatch]


@attrs.frozen
class World:
    client: Client
    tokens: Tokens
    hasher: Argon2Hasher
    dataservice: str
    alice: int  # user, password "alice password"
    root: int  # admin, password "root password"

    services: AuthServices

    async def access(self, user_id: int, roles: tuple[str, ...]) -> str:
        """The access token of a new session of `user_id` (as a login would start it)."""
        access, _refresh = await self.services.start_session(user_id, roles, self.tokens.now())
        token: str = access.token
        return token

    async def login(self, email: str, password: str) -> dict[str, Any]:
        resp = await self.client.post("/login", json={"email": email, "password": password})
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["memory", "redis"])
async def world(
    request: pytest.FixtureRequest, aiohttp_client: AiohttpClient, tmp_path: Path, dataservice_url: str
) -> World:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(PIPELINES)
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = cheap_settings(tmp_path, pipelines_file=pipelines, data_service_url=dataservice_url,
                              redis_url=redis_url)
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.auth, EchoPlugin()])
    client = await aiohttp_client(create_app(settings, pm=pm))
    services = client.app[services_key]
    alice = await create_user(dataservice_url, services.hasher, "alice@example.com", "alice password")
    root = await create_user(dataservice_url, services.hasher, "root@example.com", "root password",
                             roles=["user", "admin"])
    return World(client, services.tokens, services.hasher, dataservice_url, alice, root, services)


def forged(settings_changes: dict[str, Any], user_id: int, family: str) -> str:
    kwargs: dict[str, Any] = {
        "algorithm": "HS256", "signing_key": SECRET, "verify_key": SECRET, "issuer": "turnstile",
        "audience": "turnstile-api", "access_ttl_s": 900, "refresh_ttl_s": 3600,
    }
    kwargs.update(settings_changes)
    return Tokens(**kwargs).issue_access(user_id, ("user",), family).token


# --- auth ------------------------------------------------------------------------------------
async def test_missing_token_is_401_with_challenge(world: World) -> None:
    resp = await world.client.get("/me")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.content_type == "application/problem+json"


@pytest.mark.parametrize("case", ["garbage", "expired", "tampered", "alg_none", "wrong_aud", "wrong_iss",
                                  "wrong_secret", "refresh_as_access"])
async def test_bad_tokens_are_401(world: World, case: str) -> None:
    good = await world.access(world.alice, ("user",))
    family = str(jwt.decode(good, options={"verify_signature": False})["fam"])
    header, payload, signature = good.split(".")
    tokens = {
        "garbage": "not.a.jwt",
        "expired": forged({"clock": lambda: time.time() - 10_000}, world.alice, family),
        "tampered": ".".join([header, _b64(json.loads(_unb64(payload)) | {"roles": ["admin"]}), signature]),
        "alg_none": jwt.encode({**jwt.decode(good, options={"verify_signature": False})}, "", algorithm="none"),
        "wrong_aud": forged({"audience": "someone-else"}, world.alice, family),
        "wrong_iss": forged({"issuer": "someone-else"}, world.alice, family),
        "wrong_secret": forged({"signing_key": "x" * 48}, world.alice, family),
        "refresh_as_access": world.tokens.issue_refresh(world.alice, ("user",)).token,
    }
    resp = await world.client.get("/me", headers=bearer(tokens[case]))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_valid_token_sets_actor(world: World) -> None:
    token = await world.access(world.alice, ("user",))
    for _ in range(2):  # the second time from the verified-token cache
        resp = await world.client.get("/me", headers=bearer(token))
        assert resp.status == 200
        assert await resp.json() == {"actor": world.alice}


async def test_role_required_is_403(world: World) -> None:
    user = await world.access(world.alice, ("user",))
    admin = await world.access(world.root, ("user", "admin"))
    assert (await world.client.get("/admin", headers=bearer(user))).status == 403
    assert (await world.client.get("/admin", headers=bearer(admin))).status == 200


async def test_self_matches_only_own_id(world: World) -> None:
    token = await world.access(world.alice, ("user",))
    assert (await world.client.get(f"/users/{world.alice}", headers=bearer(token))).status == 200
    assert (await world.client.get(f"/users/{world.root}", headers=bearer(token))).status == 403
    admin = await world.access(world.root, ("admin",))
    assert (await world.client.get(f"/users/{world.alice}", headers=bearer(admin))).status == 200


async def test_anyone_passes_anonymous_and_sets_actor_when_token_valid(world: World) -> None:
    assert await (await world.client.get("/open")).json() == {"actor": None}
    assert await (await world.client.get("/open", headers=bearer("junk"))).json() == {"actor": None}
    token = await world.access(world.alice, ("user",))
    assert await (await world.client.get("/open", headers=bearer(token))).json() == {"actor": world.alice}


# --- login -----------------------------------------------------------------------------------
async def test_login_json_answers_a_token_pair(world: World) -> None:
    pair = await world.login("  Alice@Example.COM ", "alice password")
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    resp = await world.client.get("/me", headers=bearer(pair["access_token"]))
    assert await resp.json() == {"actor": world.alice}


async def test_login_accepts_the_oauth2_form(world: World) -> None:
    resp = await world.client.post("/login", data={"grant_type": "password", "username": "alice@example.com",
                                                         "password": "alice password"})
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"


async def test_unknown_email_and_wrong_password_answer_the_same(world: World) -> None:
    unknown = await world.client.post("/login", json={"email": "nobody@example.com", "password": "alice password"})
    wrong = await world.client.post("/login", json={"email": "alice@example.com", "password": "wrong password"})
    assert unknown.status == wrong.status == 401
    first, second = await unknown.json(), await wrong.json()
    first.pop("request_id"), second.pop("request_id")
    assert first == second
    assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]


async def test_disabled_user_cannot_log_in(world: World) -> None:
    await create_user(world.dataservice, world.hasher, "off@example.com", "off password", is_active=False)
    resp = await world.client.post("/login", json={"email": "off@example.com", "password": "off password"})
    assert resp.status == 403


async def test_login_rehashes_an_outdated_hash(world: World) -> None:
    old = await Argon2Hasher(time_cost=2, memory_kib=8, parallelism=1).hash("old password")
    user_id = await create_user(world.dataservice, world.hasher, "old@example.com", "", password_hash=old)
    await world.login("old@example.com", "old password")
    async with world.client.session.get(f"{world.dataservice}/api/v1/users/{user_id}") as resp:
        stored = (await resp.json())["password_hash"]
    assert stored != old
    assert not world.hasher.needs_rehash(stored)
    await world.login("old@example.com", "old password")


# --- refresh and logout ----------------------------------------------------------------------
async def test_refresh_rotates_and_reuse_revokes_the_family(world: World) -> None:
    first = await world.login("alice@example.com", "alice password")
    resp = await world.client.post("/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await world.client.get("/me", headers=bearer(second["access_token"]))).status == 200
    await asyncio.sleep(0.4)  # past the grace window (0.3 s here)
    reused = await world.client.post("/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status == 401
    # The thief's replay also killed the legitimate holder's newer token.
    assert (await world.client.post("/refresh", json={"refresh_token": second["refresh_token"]})).status == 401


async def test_two_refreshes_of_one_token_within_the_grace_window_get_the_same_pair(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    first = await world.login("alice@example.com", "alice password")
    body = {"refresh_token": first["refresh_token"]}
    answers = await asyncio.gather(*(world.client.post("/refresh", json=body) for _ in range(2)))
    assert [a.status for a in answers] == [200, 200]
    pairs = [await a.json() for a in answers]
    assert pairs[0] == pairs[1]  # a retry or a second tab: the same new pair, nobody logged out
    assert (await world.client.get("/me", headers=bearer(pairs[0]["access_token"]))).status == 200
    third = await world.client.post("/refresh", json={"refresh_token": pairs[0]["refresh_token"]})
    assert third.status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "reused" in r.getMessage()]


async def test_refresh_with_an_access_token_is_401(world: World) -> None:
    pair = await world.login("alice@example.com", "alice password")
    resp = await world.client.post("/refresh", json={"refresh_token": pair["access_token"]})
    assert resp.status == 401


async def test_refresh_of_a_disabled_user_is_401(world: World) -> None:
    pair = await world.login("alice@example.com", "alice password")
    async with world.client.session.patch(
        f"{world.dataservice}/api/v1/users/{world.alice}", json={"is_active": False}
    ) as resp:
        assert resp.status == 200
    assert (await world.client.post("/refresh", json={"refresh_token": pair["refresh_token"]})).status == 401


async def test_logout_then_refresh_is_401(world: World) -> None:
    pair = await world.login("alice@example.com", "alice password")
    resp = await world.client.post("/logout", json={"refresh_token": pair["refresh_token"]},
                                   headers=bearer(pair["access_token"]))
    assert resp.status == 204
    assert (await world.client.post("/refresh", json={"refresh_token": pair["refresh_token"]})).status == 401


async def test_logout_needs_a_bearer_and_the_callers_own_token(world: World) -> None:
    alice = await world.login("alice@example.com", "alice password")
    root = await world.login("root@example.com", "root password")
    body = {"refresh_token": alice["refresh_token"]}
    assert (await world.client.post("/logout", json=body)).status == 401
    assert (await world.client.post("/logout", json=body, headers=bearer(root["access_token"]))).status == 401
    assert (await world.client.post("/refresh", json=body)).status == 200


# --- revoke-tokens ---------------------------------------------------------------------------
async def test_revoke_tokens_kills_existing_access_and_refresh_tokens(world: World) -> None:
    alice = await world.login("alice@example.com", "alice password")
    assert (await world.client.get("/me", headers=bearer(alice["access_token"]))).status == 200
    admin = await world.login("root@example.com", "root password")
    resp = await world.client.delete(f"/users/{world.alice}", headers=bearer(admin["access_token"]))
    assert resp.status == 200
    assert (await world.client.get("/me", headers=bearer(alice["access_token"]))).status == 401
    assert (await world.client.post("/refresh", json={"refresh_token": alice["refresh_token"]})).status == 401
    assert (await world.client.get("/me", headers=bearer(admin["access_token"]))).status == 200
    again = await world.login("alice@example.com", "alice password")  # a new login works at once
    assert (await world.client.get("/me", headers=bearer(again["access_token"]))).status == 200



@pytest.mark.parametrize(
    ("body", "revoked"),
    [
        ({"is_active": False}, True), ({"password": "new password"}, True), ({"roles": ["user"]}, True),
        ({"full_name": "Ada"}, False), ({"is_active": True}, False), ({"password": "x", "fail": True}, False),
    ],
)
async def test_revoke_tokens_after_a_patch(world: World, body: dict[str, Any], revoked: bool) -> None:
    alice = await world.login("alice@example.com", "alice password")
    resp = await world.client.patch(f"/users/{world.alice}", json=body, headers=bearer(alice["access_token"]))
    assert resp.status == (409 if body.get("fail") else 200)
    after = await world.client.get("/me", headers=bearer(alice["access_token"]))
    assert after.status == (401 if revoked else 200)


async def test_revoke_tokens_on_user_events(world: World) -> None:
    step = _message_step(world)
    seen: list[str] = []

    async def rest(event: Event) -> None:
        seen.append(event.type)

    alice = await world.login("alice@example.com", "alice password")
    root = await world.login("root@example.com", "root password")
    await step(_event("user.updated", id=world.alice, is_active=True), rest)
    await step(_event("user.created", id=world.root, is_active=True), rest)
    assert (await world.client.get("/me", headers=bearer(alice["access_token"]))).status == 200
    await step(_event("user.updated", id=world.alice, is_active=False), rest)
    await step(_event("user.deleted", id=world.root), rest)
    assert (await world.client.get("/me", headers=bearer(alice["access_token"]))).status == 401
    assert (await world.client.get("/me", headers=bearer(root["access_token"]))).status == 401
    assert seen == ["user.updated", "user.created", "user.updated", "user.deleted"]


async def test_an_event_revokes_as_of_when_it_happened_not_when_it_arrives(world: World) -> None:
    step = _message_step(world)
    deactivated = _event("user.updated", id=world.alice, is_active=False)  # then delayed in an outbox
    await asyncio.sleep(0.002)  # tokens record their iat in whole milliseconds
    alice = await world.login("alice@example.com", "alice password")  # re-enabled meanwhile, logged in

    await step(deactivated, _nothing)

    assert (await world.client.get("/me", headers=bearer(alice["access_token"]))).status == 200
    refreshed = await world.client.post("/refresh", json={"refresh_token": alice["refresh_token"]})
    assert refreshed.status == 200


def _message_step(world: World) -> Any:
    step_type = next(t for t in plugins.auth.register_steps() if t.name == "revoke-tokens")
    assert step_type.build_for_message is not None
    config = step_type.config_cls(user="{id}")
    return step_type.build_for_message(config, SubscriptionContext(world.client.app, "user_sessions"))


def _event(kind: str, **data: Any) -> Event:
    return Event.create(kind, data, "r")


async def _nothing(event: Event) -> None:
    return None


async def test_redis_down_access_checks_use_this_process_record(
    aiohttp_client: AiohttpClient, tmp_path: Path, dataservice_url: str
) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(PIPELINES)
    settings = cheap_settings(tmp_path, pipelines_file=pipelines, data_service_url=dataservice_url,
                              redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.auth, EchoPlugin()])
    client = await aiohttp_client(create_app(settings, pm=pm))
    services = client.app[services_key]
    kept_id = await create_user(dataservice_url, services.hasher, "kept@example.com", "kept password")
    gone_id = await create_user(dataservice_url, services.hasher, "gone@example.com", "gone password")
    # Sessions live in Redis: while it is down, only the ends this process saw are known.
    kept = services.tokens.issue_access(kept_id, ("user",), "session-1").token
    revoked = services.tokens.issue_access(gone_id, ("user",), "session-2").token
    # Redis refuses: this process and the data service record know it, Redis gets it later.
    assert await services.revocations.revoke(gone_id) is False
    for path in ("/me", "/open"):
        assert (await client.get(path, headers=bearer(kept))).status == 200
    assert (await client.get("/me", headers=bearer(revoked))).status == 401
    assert (await client.get("/me")).status == 401  # no token at all
    # Families are never guessed: a logout needs Redis.
    refresh = services.tokens.issue_refresh(1, ("user",)).token
    logout = await client.post("/logout", json={"refresh_token": refresh}, headers=bearer(kept))
    assert logout.status == 503
    assert "Retry-After" in logout.headers


async def test_openapi_shows_what_the_steps_add(world: World) -> None:
    document = await (await world.client.get("/api/docs/swagger.json")).json()
    paths = document["paths"]
    me = paths["/me"]["get"]
    assert me["security"]
    assert "WWW-Authenticate" in me["responses"]["401"]["headers"]
    assert "403" in paths["/admin"]["get"]["responses"]
    assert paths["/open"]["get"]["security"] == []  # public, and said so
    login = paths["/login"]["post"]["responses"]
    assert login["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TokenPair"}
    assert {"401", "403"} <= set(login)
    assert "204" in paths["/logout"]["post"]["responses"]
    assert {"LoginRequest", "RefreshRequest", "TokenPair"} <= set(document["components"]["schemas"])


def test_self_needs_the_route_parameter(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text('[[pipelines]]\nname = "me"\nroute = "GET /me"\n'
                         'steps = [{ use = "auth", allow = ["self"] }, { use = "echo" }]\n')
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.auth, EchoPlugin()])
    with pytest.raises(PipelineFileError) as info:
        create_app(cheap_settings(tmp_path, pipelines_file=pipelines), pm=pm)
    assert [str(e) for e in info.value.errors] == [
        f"{pipelines}:4: pipeline 'me', step 1 (auth): allows 'self' but the route has no {{id}} parameter "
        "(set self_param)"
    ]
