"""The engine's composition (app/pipeline/build.py): the rules gate stands after the last
guard wherever wrappers stand, so body validation and business rules never run before
authentication."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient

import plugins.auth
from app.keys import data_service_key
from app.main import create_app
from app.plugins import make_plugin_manager
from app.settings import Settings
from plugins.auth.services import services_key
from tests.fixtures import sample_plugin

Client = TestClient[web.Request, web.Application]

# An audit-like wrapper (`tag`) listed before `auth`: it runs first, the gate still after auth.
PIPELINES = """
[[pipelines]]
name = "audited_widget"
route = "POST /widgets"
body = "Widget"
steps = [
  { use = "tag", name = "audit" },
  { use = "auth", allow = ["authenticated"] },
  { use = "echo", status = 201 },
]

[[pipelines]]
name = "silent_widget"
route = "GET /widgets/silent"
steps = [
  { use = "tag", name = "outer" },
  { use = "silent" },
]
"""


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, core_settings: Settings, tmp_path: Path) -> Client:
    path = tmp_path / "pipelines.toml"
    path.write_text(PIPELINES)
    settings = attrs.evolve(core_settings, pipelines_file=path)
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.auth, sample_plugin])
    return await aiohttp_client(create_app(settings, pm=pm))


async def _token(client: Client) -> str:
    # A user the data service knows: revocation checks read its record.
    record = {"email": "ann@example.com", "password_hash": "x", "full_name": None, "roles": ["user"],
              "is_active": True}
    reply = await client.app[data_service_key].request("POST", "/api/v1/users/", json=record)
    services = client.app[services_key]
    access, _refresh = await services.start_session(int(reply.data["id"]), ("user",), services.tokens.now())
    token: str = access.token
    return token


async def test_an_anonymous_invalid_body_is_401_not_a_detailed_422(client: Client) -> None:
    resp = await client.post("/widgets", json={"name": "", "size": "big"})
    assert resp.status == 401
    assert "errors" not in await resp.json()


async def test_an_anonymous_rule_breaking_body_is_401_not_the_rules_answer(client: Client) -> None:
    resp = await client.post("/widgets", json={"name": "w@rival.example", "size": 1})
    assert resp.status == 401


async def test_after_authentication_the_gate_validates_and_runs_the_rules(client: Client) -> None:
    headers = {"Authorization": f"Bearer {await _token(client)}"}
    invalid = await client.post("/widgets", json={"name": "", "size": "big"}, headers=headers)
    assert invalid.status == 422
    refused = await client.post("/widgets", json={"name": "w@rival.example", "size": 1}, headers=headers)
    assert refused.status == 403
    ok = await client.post("/widgets", json={"name": "w", "size": 1}, headers=headers)
    assert ok.status == 201
    # The wrapper before auth still ran, first in and last out.
    assert (await ok.json())["trail"] == ["in:audit"]
    assert ok.headers["X-Trail"] == "out:audit"


async def test_a_step_that_returns_no_response_is_a_500_naming_it_not_its_wrapper(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    resp = await client.get("/widgets/silent", headers={"X-Request-ID": "mine-1"})
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    # Answered by the error middleware like any failure: the request's own id, no-store.
    assert resp.headers["X-Request-ID"] == "mine-1"
    assert (await resp.json())["request_id"] == "mine-1"
    assert resp.headers["Cache-Control"] == "no-store"
    (record,) = [r for r in caplog.records if "not a response" in r.getMessage()]
    message = record.getMessage()
    assert "step 2:silent of pipeline 'silent_widget'" in message
    assert "plugin tests.fixtures.sample_plugin" in message
    assert "returned NoneType" in message
