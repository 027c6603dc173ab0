from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pytest_aiohttp import AiohttpClient, AiohttpServer

from app.dataservice import start_dataservice
from app.errors import InternalError
from app.hookspecs import hookimpl
from app.keys import actor_key
from app.pipeline.template import Template
from app.pipeline.types import Actor, PipelineConfig
from tests.plugins.data_fetch.apps import FakeUpstream, make_client, start_fake, unused_port_url

USERS = """
[[pipelines]]
name = "create_user"
route = "POST /users"
body = "SignUp"
steps = [{ use = "data-fetch", call = "POST /api/v1/users/", status = 201 }]

[[pipelines]]
name = "get_user"
route = "GET /users/{id:int}"
steps = [{ use = "data-fetch", call = "GET /api/v1/users/{id}" }]

[[pipelines]]
name = "delete_user"
route = "DELETE /users/{id:int}"
steps = [{ use = "data-fetch", call = "DELETE /api/v1/users/{id}", status = 204 }]
"""

THING = """
[[pipelines]]
name = "get_thing"
route = "GET /things/{name}"
query = "Page"
steps = [{ use = "data-fetch", call = "GET /api/v1/things/{name}", response = "Thing" }]
"""


@attrs.frozen(kw_only=True)
class SignUp:
    """A sign-up as a client sends it."""

    email: str
    password: str


@attrs.frozen(kw_only=True)
class Page:
    """Paging."""

    limit: int = 10
    verbose: bool = False


@attrs.frozen(kw_only=True)
class Thing:
    """A thing."""

    id: int


@attrs.frozen(kw_only=True)
class Listing:
    """A page of things: `limit` is what was asked."""

    items: list[int]
    total: int
    limit: int


class HashAndStrip:
    """A team plugin: fills the stored record from the sign-up, and strips the hash on the way out."""

    @hookimpl
    def register_models(self) -> list[type[Any]]:
        return [SignUp, Page, Thing]

    @hookimpl
    async def transform_upstream(
        self, request: web.Request, pipeline: PipelineConfig, payload: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "email": payload["email"], "password_hash": "hashed:" + payload["password"],
            "full_name": None, "roles": ["user"], "is_active": True,
        }

    @hookimpl
    def transform_response(self, request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key != "password_hash"}
        return None


class ModelsOnly:
    @hookimpl
    def register_models(self) -> list[type[Any]]:
        return [SignUp, Page, Thing, Listing]


@pytest.fixture
async def dataservice_url(tmp_path: Path) -> AsyncIterator[str]:
    runner, url = await start_dataservice(tmp_path / "db.sqlite3")
    try:
        yield url
    finally:
        await runner.cleanup()


async def test_create_get_delete_through_the_real_data_service(
    aiohttp_client: AiohttpClient, tmp_path: Path, dataservice_url: str
) -> None:
    client = await make_client(aiohttp_client, tmp_path, USERS, data_service_url=dataservice_url,
                               extra=[HashAndStrip()])

    created = await client.post("/users", json={"email": "ann@example.com", "password": "correct horse"})
    assert created.status == 201
    assert created.content_type == "application/json"
    user = await created.json()
    assert user["email"] == "ann@example.com"
    assert "password_hash" not in user

    got = await client.get(f"/users/{user['id']}")
    assert got.status == 200
    assert await got.json() == user

    deleted = await client.delete(f"/users/{user['id']}")
    assert deleted.status == 204
    assert await deleted.read() == b""

    gone = await client.get(f"/users/{user['id']}")
    assert gone.status == 404
    assert gone.content_type == "application/problem+json"
    assert (await gone.json())["status"] == 404


async def test_without_hooks_the_answer_keeps_only_the_response_models_fields(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeUpstream(body=b'{"id": 7, "password_hash": "dropped"}')
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=await start_fake(aiohttp_server, fake),
                               extra=[ModelsOnly()])

    response = await client.get("/things/a%2Fb?limit=5&verbose=true", headers={"X-Request-ID": "req-123"})

    assert response.status == 200
    assert await response.json() == {"id": 7}
    assert fake.seen == [{
        "method": "GET", "path": "/api/v1/things/a%2Fb", "query": {"limit": "5", "verbose": "true"},
        "json": None, "request_id": "req-123",
    }]


async def test_without_a_response_model_the_answer_is_passed_on_as_it_came(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeUpstream(body=b'{"id": "seven", "other": [1]}')
    client = await make_client(aiohttp_client, tmp_path, THING.replace(', response = "Thing"', ""),
                               data_service_url=await start_fake(aiohttp_server, fake), extra=[ModelsOnly()])

    response = await client.get("/things/x")

    assert response.status == 200
    assert await response.json() == {"id": "seven", "other": [1]}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"hello": "world"}', "id: missing required field"),
        (b"[1, 2, 3]", "(the answer): expected a JSON object"),
        (b'{"id": true, "secret": "s3cr3t-value"}', "id: expected an integer"),
        (b'{"id": null}', "id: must not be null"),
        (b"null", "(the answer): must not be null"),
    ],
    ids=["another-shape", "a-list", "bool-for-int", "null-field", "null-answer"],
)
async def test_an_answer_that_does_not_fit_the_model_is_502_and_one_warning(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, *,
    caplog: pytest.LogCaptureFixture, body: bytes, problem: str,
) -> None:
    fake = FakeUpstream(body=body)
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=await start_fake(aiohttp_server, fake),
                               extra=[ModelsOnly()])

    with caplog.at_level(logging.WARNING, logger="turnstile.data_fetch"):
        response = await client.get("/things/x")

    assert response.status == 502
    assert response.content_type == "application/problem+json"
    assert (await response.json())["type"].endswith("/bad-gateway")
    warnings = [r for r in caplog.records if r.name == "turnstile.data_fetch"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert warnings[0].getMessage() == f"pipeline get_thing: the data service's answer does not fit Thing: {problem}"
    assert "s3cr3t" not in caplog.text


async def test_the_check_runs_before_and_after_transform_response_hooks(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seen: list[Any] = []

    class Spy:
        @hookimpl
        def transform_response(self, request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
            seen.append(data)
            return {**data, "added_by_a_plugin": True}

    fake = FakeUpstream(body=b'{"id": 7, "password_hash": "dropped"}')
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=await start_fake(aiohttp_server, fake),
                               extra=[ModelsOnly(), Spy()])

    response = await client.get("/things/x")

    assert seen == [{"id": 7}]
    # A field the model does not declare never leaves, whoever added it (extend_models does).
    assert await response.json() == {"id": 7}


async def test_route_params_are_percent_encoded_into_the_upstream_path(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeUpstream()
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=await start_fake(aiohttp_server, fake),
                               extra=[ModelsOnly()])

    await client.get("/things/a%3Fb")

    assert fake.seen[0]["path"] == "/api/v1/things/a%3Fb"
    assert fake.seen[0]["query"] == {}


@pytest.mark.parametrize(
    ("fake", "status"),
    [
        (FakeUpstream(status=404, body=b'{"detail": "no such thing"}', content_type="application/problem+json"), 404),
        (FakeUpstream(status=500, body=b"boom", content_type="text/plain"), 502),
        (FakeUpstream(status=200, body=b"<html>not json", content_type="text/html"), 502),
        (FakeUpstream(delay_s=1.0), 504),
    ],
    ids=["not-found", "server-error", "garbage", "slow"],
)
async def test_upstream_failures_become_problems(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, fake: FakeUpstream, status: int
) -> None:
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=await start_fake(aiohttp_server, fake),
                               extra=[ModelsOnly()], timeout_s=0.2)

    response = await client.get("/things/x")

    assert response.status == status
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["status"] == status
    assert "request_id" in problem


async def test_unreachable_data_service_is_503_with_retry_after(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=unused_port_url(),
                               extra=[ModelsOnly()])

    response = await client.get("/things/x")

    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1


async def test_document_lists_success_model_and_upstream_problems(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await make_client(aiohttp_client, tmp_path, THING, data_service_url=unused_port_url(),
                               extra=[ModelsOnly()])

    document = await (await client.get("/api/docs/swagger.json")).json()

    responses = document["paths"]["/things/{name}"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert {"404", "502", "503", "504"} <= set(responses)
    assert "409" not in responses  # a GET never conflicts
    assert "Retry-After" in responses["503"]["headers"]


def test_template_fills_params_and_actor() -> None:
    request = make_mocked_request("GET", "/", match_info={"id": "7", "name": "a/b"})
    request[actor_key] = Actor(user_id=42, roles=("user",))

    path = Template("/u/{id}/{name}/{actor}", quote=True, safe=frozenset({"id"}))
    assert path.for_request(request) == "/u/7/a%2Fb/42"
    assert Template("user:{name}").for_request(request) == "user:a/b"
    assert Template("static").for_request(request) == "static"
    assert Template("user:{id}").for_data({"id": 9}) == "user:9"


def test_template_naming_the_actor_without_auth_is_an_internal_error() -> None:
    request = make_mocked_request("GET", "/", match_info={})

    with pytest.raises(InternalError):
        Template("user:{actor}").for_request(request)


@pytest.mark.parametrize(("query", "limit"), [("", 10), ("?limit=5", 5)])
async def test_a_field_the_answer_leaves_out_is_the_querys_value_of_that_name(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, query: str, limit: int
) -> None:
    # The data service's list answer is {items, total} (contract §7); the page's limit is what was asked.
    fake = FakeUpstream(body=b'{"items": [1, 2], "total": 9}')
    listing = """
[[pipelines]]
name = "list_things"
route = "GET /things"
query = "Page"
steps = [{ use = "data-fetch", call = "GET /api/v1/things", response = "Listing" }]
"""
    upstream = await start_fake(aiohttp_server, fake)
    client = await make_client(aiohttp_client, tmp_path, listing, data_service_url=upstream, extra=[ModelsOnly()])

    response = await client.get(f"/things{query}")

    assert response.status == 200, await response.text()
    assert await response.json() == {"items": [1, 2], "total": 9, "limit": limit}
