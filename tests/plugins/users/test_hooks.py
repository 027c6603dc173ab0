from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from pytest_aiohttp import AiohttpClient

import plugins.users
from app.errors import InternalError
from app.keys import actor_key, body_key, models_key, password_hasher_key
from app.middlewares.errors import error_middleware
from app.pipeline.config import parse_route
from app.pipeline.gate import make_gate
from app.pipeline.types import Actor, PipelineConfig
from app.plugins import call_chain, make_plugin_manager
from plugins.auth.passwords import Argon2Hasher
from plugins.users.models import MODELS

MODELS_BY_NAME: dict[str, type] = {model.__name__: model for model in MODELS}
PM = make_plugin_manager(entrypoints=False, extra=[plugins.users])


def pipeline(body: str | None, route: str = "POST /users") -> PipelineConfig:
    return PipelineConfig(name="test", route=parse_route(route), steps=(), body=body)


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(request.get(body_key))


async def gate_client(aiohttp_client: AiohttpClient, body: str) -> TestClient[web.Request, web.Application]:
    """A one-route app: a stand-in auth step (roles from a header), the real rules gate, an echo."""
    config = pipeline(body)
    gate = make_gate(config, PM, MODELS_BY_NAME)

    async def route(request: web.Request) -> web.StreamResponse:
        roles = request.headers.get("X-Test-Roles")
        if roles is not None:
            request[actor_key] = Actor(user_id=7, roles=tuple(roles.split(",")))
        return await gate(request, _echo)

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/users", route)
    return await aiohttp_client(app)


def mocked_request(hasher: Argon2Hasher | None) -> web.Request:
    """A request of an app where `hasher` is the password hasher a plugin provided (or none is)."""
    app = web.Application()
    app[models_key] = MODELS_BY_NAME
    if hasher is not None:
        app[password_hasher_key] = hasher
    return make_mocked_request("POST", "/users", app=app)


async def test_email_is_trimmed_and_lower_cased_before_validation(aiohttp_client: AiohttpClient) -> None:
    client = await gate_client(aiohttp_client, "UserRegister")
    resp = await client.post("/users", json={"email": "  Ada@Example.COM ", "password": "correct horse"})
    assert resp.status == 200
    assert (await resp.json())["email"] == "ada@example.com"


async def test_an_invalid_body_is_422(aiohttp_client: AiohttpClient) -> None:
    client = await gate_client(aiohttp_client, "UserRegister")
    resp = await client.post("/users", json={"email": "ada@example.com", "password": "short"})
    assert resp.status == 422


@pytest.mark.parametrize("body_model", ["UserRegister", "UserCreate", "UserPatch"])
async def test_an_address_that_reads_as_another_is_refused_where_an_account_gets_it(
    aiohttp_client: AiohttpClient, body_model: str
) -> None:
    client = await gate_client(aiohttp_client, body_model)
    body = {"email": "admin\u180b@example.com", "password": "correct horse"}
    resp = await client.post("/users", json=body, headers={"X-Test-Roles": "admin"})
    assert resp.status == 422
    problem = await resp.json(content_type=None)
    assert problem["errors"] == [{"loc": ["body", "email"],
                                  "msg": "the character U+180B is invisible, unassigned or of private use here"}]


@pytest.mark.parametrize("field", ["roles", "is_active"])
@pytest.mark.parametrize("body_model", ["UserPatch", "UserCreate"])
async def test_only_an_admin_sets_roles_or_is_active(
    aiohttp_client: AiohttpClient, body_model: str, field: str
) -> None:
    client = await gate_client(aiohttp_client, body_model)
    body: dict[str, Any] = {"email": "ada@example.com", "password": "correct horse"}
    body[field] = ["admin"] if field == "roles" else True
    refused = await client.post("/users", json=body, headers={"X-Test-Roles": "user"})
    assert refused.status == 403
    assert field in (await refused.json())["detail"]
    assert (await client.post("/users", json=body, headers={"X-Test-Roles": "admin,user"})).status == 200


async def test_a_user_may_patch_their_own_name(aiohttp_client: AiohttpClient) -> None:
    client = await gate_client(aiohttp_client, "UserPatch")
    resp = await client.post("/users", json={"full_name": "Ada"}, headers={"X-Test-Roles": "user"})
    assert resp.status == 200


async def upstream(hasher: Argon2Hasher | None, body: str | None, payload: dict[str, Any]) -> Any:
    return await call_chain(
        PM.hook.transform_upstream, "payload", payload, request=mocked_request(hasher), pipeline=pipeline(body)
    )


async def test_password_is_replaced_by_its_hash(hasher: Argon2Hasher) -> None:
    sent = await upstream(hasher, "UserPatch", {"password": "correct horse"})
    assert set(sent) == {"password_hash"}
    assert sent["password_hash"].startswith("$argon2id$")
    assert await hasher.verify(sent["password_hash"], "correct horse")
    assert "correct horse" not in repr(sent)


async def test_without_a_password_hasher_no_password_is_ever_sent() -> None:
    """The auth plugin provides hashing; with it disabled a password is refused, never passed on."""
    with pytest.raises(InternalError):
        await upstream(None, "UserPatch", {"password": "correct horse"})


async def test_register_gets_defaults_and_can_never_choose_roles(hasher: Argon2Hasher) -> None:
    sent = await upstream(
        hasher,
        "UserRegister",
        {"email": "ada@example.com", "password": "correct horse", "roles": ["admin"], "is_active": False},
    )
    assert sent["roles"] == ["user"]
    assert sent["is_active"] is True
    assert sent["full_name"] is None
    assert "password" not in sent


async def test_create_keeps_what_the_admin_chose(hasher: Argon2Hasher) -> None:
    sent = await upstream(
        hasher,
        "UserCreate",
        {
            "email": "ada@example.com",
            "password": "correct horse",
            "roles": ["admin"],
            "is_active": False,
            "full_name": "Ada",
        },
    )
    assert (sent["roles"], sent["is_active"], sent["full_name"]) == (["admin"], False, "Ada")
    defaults = await upstream(hasher, "UserCreate", {"email": "bob@example.com", "password": "correct horse"})
    assert (defaults["roles"], defaults["is_active"], defaults["full_name"]) == (["user"], True, None)


async def test_a_payload_without_password_is_left_alone(hasher: Argon2Hasher) -> None:
    assert await upstream(hasher, "UserPatch", {"full_name": "Ada"}) == {"full_name": "Ada"}


RECORD = {
    "id": 1,
    "email": "ada@example.com",
    "full_name": None,
    "is_active": True,
    "roles": ["user"],
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
    "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
    "internal_note": "x",
}
PUBLIC = {key: value for key, value in RECORD.items() if key not in ("password_hash", "internal_note")}


async def response(hasher: Argon2Hasher, data: Any) -> Any:
    return await call_chain(
        PM.hook.transform_response,
        "data",
        data,
        request=mocked_request(hasher),
        pipeline=pipeline(None, "GET /users"),
    )


async def test_hash_is_stripped_from_a_record(hasher: Argon2Hasher) -> None:
    assert await response(hasher, dict(RECORD)) == PUBLIC


async def test_hash_is_stripped_from_each_item_of_a_page(hasher: Argon2Hasher) -> None:
    page = {"items": [dict(RECORD), {**RECORD, "id": 2}], "total": 2, "limit": 50, "offset": 0}
    out = await response(hasher, page)
    assert out == {"items": [PUBLIC, {**PUBLIC, "id": 2}], "total": 2, "limit": 50, "offset": 0}


async def test_other_data_passes_unchanged(hasher: Argon2Hasher) -> None:
    assert await response(hasher, {"status": "ok"}) == {"status": "ok"}
    assert await response(hasher, [1, 2]) == [1, 2]


def test_registers_its_models() -> None:
    names = {model.__name__ for models in PM.hook.register_models() for model in models}
    assert names == {"User", "UserPage", "UserRegister", "UserCreate", "UserPatch", "Pagination"}
