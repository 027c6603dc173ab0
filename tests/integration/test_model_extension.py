"""A plugin extends a model (contract §11): a team adds `display_name` to the User answer.
The field is documented, checked, kept by every projection, cached and put in events."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, ClassVar

import attrs
import orjson
import pytest
from aiohttp import web

from app import PipelineConfig, hookimpl, schema_field
from app.pipeline.registry import RegistryError, make_registry
from app.plugins import make_plugin_manager
from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, StackFactory, bearer, login, register


@attrs.frozen(kw_only=True)
class DisplayName:
    display_name: str | None = schema_field(default=None, description="How the user is shown: name or email.")


class DisplayNamePlugin:
    """What a team writes: the field, and the rule that fills it."""

    @hookimpl
    def extend_models(self) -> dict[str, type[Any]]:
        return {"User": DisplayName}

    @hookimpl
    def transform_response(self, request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
        if isinstance(data, dict) and "email" in data:
            return {**data, "display_name": data.get("full_name") or data["email"], "undeclared": "x"}
        return None


class PageDisplayNamePlugin(DisplayNamePlugin):
    """The same field, filled in each user of a page too."""

    @hookimpl
    def transform_response(self, request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            items = [{**item, "display_name": item.get("full_name") or item["email"]} for item in data["items"]]
            return {**data, "items": items}
        return super().transform_response(request, pipeline, data)


class WrongTypePlugin:
    @hookimpl
    def extend_models(self) -> dict[str, type[Any]]:
        return {"User": DisplayName}

    @hookimpl
    def transform_response(self, request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
        return {**data, "display_name": 42} if isinstance(data, dict) and "email" in data else None


async def test_an_added_field_is_answered_cached_evented_and_documented(
    stack: StackFactory, redis_db: str, tmp_path: Path
) -> None:
    client = await stack(redis_url=redis_db, plugins=(DisplayNamePlugin(),))
    user = await register(client, "ann@example.com", full_name="Ann")
    assert user["display_name"] == "Ann"
    assert "undeclared" not in user  # added by a hook, declared nowhere: dropped
    headers = bearer(await login(client, "ann@example.com", "correct-horse-1"))
    miss = await client.get(f"/api/v1/users/{user['id']}", headers=headers)
    hit = await client.get(f"/api/v1/users/{user['id']}", headers=headers)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert (await miss.json())["display_name"] == (await hit.json())["display_name"] == "Ann"
    document = await (await client.get("/api/docs/swagger.json")).json()
    assert document["components"]["schemas"]["User"]["properties"]["display_name"]["type"] == "string"
    # Embedded events go to var/events.jsonl: the created user carries the field too.
    events = [orjson.loads(line) for line in (tmp_path / "var" / "events.jsonl").read_bytes().splitlines()]
    created = [e for e in events if e["type"] == "user.created" and e["data"]["id"] == user["id"]]
    assert created[0]["data"]["display_name"] == "Ann"
    assert "undeclared" not in created[0]["data"]


async def test_an_added_field_is_in_the_models_that_hold_the_extended_one(stack: StackFactory) -> None:
    # The page of users held the User class as registered: the added field was dropped from
    # every item of GET /api/v1/users, though the document listed it.
    registry = make_registry(make_plugin_manager(extra=[DisplayNamePlugin()]))
    items = attrs.fields_dict(registry.models["UserPage"])["items"].type
    assert typing.get_args(items) == (registry.models["User"],)
    client = await stack(plugins=(PageDisplayNamePlugin(),))
    await register(client, "ann@example.com", full_name="Ann")
    admin = bearer(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))
    page = await (await client.get("/api/v1/users", headers=admin)).json()
    assert {item["email"]: item["display_name"] for item in page["items"]}["ann@example.com"] == "Ann"
    assert [name for name, _ in attrs.fields_dict(registry.models["UserPage"]).items()] == [
        "items", "total", "limit", "offset",
    ]


def test_an_added_field_without_a_default_is_refused() -> None:
    # Records stored without it (all of them, until the data service has it) made every answer,
    # writes' included, a 502 once saved.
    @attrs.frozen(kw_only=True)
    class Tier:
        tier: str = schema_field(description="A field with no default.")

    class Required:
        @hookimpl
        def extend_models(self) -> dict[str, type[Any]]:
            return {"User": Tier}

    with pytest.raises(RegistryError, match="adds tier to User without a default"):
        make_registry(make_plugin_manager(extra=[Required()]))


async def test_an_added_field_of_the_wrong_type_never_leaves(stack: StackFactory) -> None:
    client = await stack(plugins=(WrongTypePlugin(),))
    resp = await client.post("/api/v1/auth/register", json={"email": "ann@example.com", "password": "correct-horse-1"})
    assert resp.status == 500
    body = await resp.json()
    assert "display_name" not in body
    assert "42" not in body["detail"]


def test_extending_an_unknown_model_or_an_existing_field_is_refused() -> None:
    @attrs.frozen(kw_only=True)
    class Email:
        email: str = schema_field(default="", description="Clashes with User.email.")

    class Clash:
        @hookimpl
        def extend_models(self) -> dict[str, type[Any]]:
            return {"User": Email, "Nobody": DisplayName}

    with pytest.raises(RegistryError) as info:
        make_registry(make_plugin_manager(extra=[Clash()]))
    message = str(info.value)
    assert "adds email to User, which already has it" in message
    assert "extends model 'Nobody', which no plugin registered" in message


def test_a_models_json_bound_that_is_not_a_positive_integer_stops_the_start() -> None:
    @attrs.frozen(kw_only=True)
    class Bulk:
        """A team's bulk body."""

        max_json_containers: ClassVar[object] = "100"
        items: list[str] = schema_field(factory=list, description="Items.", maxItems=100)

    class Team:
        @hookimpl
        def register_models(self) -> list[type[Any]]:
            return [Bulk]

    with pytest.raises(RegistryError) as info:
        make_registry(make_plugin_manager(extra=[Team()]))
    assert "model 'Bulk' of " in str(info.value)
    assert "max_json_containers must be a positive integer, not '100'" in str(info.value)
