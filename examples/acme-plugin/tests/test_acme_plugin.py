"""ACME's plugin, tested with Turnstile's test kit: the `turnstile` fixture runs the whole
service on its embedded defaults with these pipelines and ACME's settings. Only `app` (the
public API) and the test kit are imported from Turnstile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.testing import PipelineFileError, Service, SettingsError, StartService

PIPELINES = """
[[pipelines]]
name = "register"
route = "POST /api/v1/auth/register"
body = "UserRegister"
steps = [
  { use = "acme-audit" },
  { use = "acme-maintenance", retry_after_s = 120 },
  { use = "event-emit", event = "user.created" },
  { use = "data-fetch", call = "POST /api/v1/users/", status = 201, response = "User" },
]

[[pipelines]]
name = "login"
route = "POST /api/v1/auth/login"
body = "LoginRequest"
steps = [{ use = "login" }]

[[pipelines]]
name = "profile"
route = "GET /api/v1/acme/profile"
tags = ["acme"]
steps = [
  { use = "auth", allow = ["authenticated"] },
  { use = "data-fetch", call = "GET /api/v1/users/{actor}", response = "AcmeProfile" },
]
"""
# The auth plugin's cheapest argon2 costs: these tests check rules, not hashing.
CHEAP = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1"}
ANN = {"email": "ann@acme.example", "password": "correct-horse-1"}
BOB = {"email": "bob@rival.example", "password": "correct-horse-1"}


async def start(turnstile: StartService, **env: str) -> Service:
    return await turnstile(PIPELINES, plugins=["acme_plugin"], env={**CHEAP, **env})


async def test_only_allowed_domains_may_register(turnstile: StartService) -> None:
    service = await start(turnstile, ACME_ALLOWED_EMAIL_DOMAINS="acme.example")
    refused = await service.client.post("/api/v1/auth/register", json=BOB)
    assert refused.status == 403
    assert (await refused.json())["detail"] == "Only addresses at acme.example may register."
    assert (await service.client.post("/api/v1/auth/register", json=ANN)).status == 201
    assert [event["data"]["email"] for event in service.events()] == ["ann@acme.example"]


async def test_without_an_allow_list_anyone_may_register(turnstile: StartService) -> None:
    service = await start(turnstile)
    assert (await service.client.post("/api/v1/auth/register", json=BOB)).status == 201


async def profile(service: Service) -> dict[str, object]:
    assert (await service.client.post("/api/v1/auth/register", json=ANN)).status == 201
    tokens = await (await service.client.post("/api/v1/auth/login", json=ANN)).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    resp = await service.client.get("/api/v1/acme/profile", headers=bearer)
    assert resp.status == 200, await resp.text()
    answer: dict[str, object] = await resp.json()
    return answer


async def test_the_profile_carries_the_support_link(turnstile: StartService) -> None:
    service = await start(turnstile, ACME_SUPPORT_URL="https://help.acme.example")
    answer = await profile(service)
    assert answer == {"id": answer["id"], "email": "ann@acme.example", "support_url": "https://help.acme.example"}


async def test_without_a_support_link_the_profile_is_plain(turnstile: StartService) -> None:
    answer = await profile(await start(turnstile))
    assert set(answer) == {"id", "email"}


async def test_maintenance_answers_503_with_retry_after(turnstile: StartService) -> None:
    service = await start(turnstile, ACME_MAINTENANCE="1")
    resp = await service.client.post("/api/v1/auth/register", json=ANN)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "120"
    assert resp.content_type == "application/problem+json"
    assert service.events() == []


async def test_the_openapi_document_shows_what_acme_adds(turnstile: StartService) -> None:
    service = await start(turnstile)
    document = await (await service.client.get("/api/docs/swagger.json")).json()
    unavailable = document["paths"]["/api/v1/auth/register"]["post"]["responses"]["503"]
    assert "Down for maintenance" in unavailable["description"]
    assert "Retry-After" in unavailable["headers"]
    assert "support_url" in document["components"]["schemas"]["AcmeProfile"]["properties"]


async def test_a_bad_maintenance_config_is_reported_with_its_line(turnstile: StartService) -> None:
    with pytest.raises(PipelineFileError) as info:
        await turnstile(PIPELINES.replace("retry_after_s = 120", "retry_after_s = 0"), env=CHEAP)
    [error] = [str(error) for error in info.value.errors]
    assert error.endswith("pipelines-1.toml:8: pipeline 'register', step 2 (acme-maintenance): "
                          "'retry_after_s' must be >= 1: 0")


async def test_a_bad_setting_is_reported_at_start_up(turnstile: StartService) -> None:
    with pytest.raises(SettingsError) as info:
        await start(turnstile, ACME_MAINTENANCE="maybe")
    assert info.value.problems == ["ACME_MAINTENANCE='maybe': expected 1/0, true/false, yes/no, on/off"]


async def test_the_audit_file_is_open_while_the_service_runs(turnstile: StartService, tmp_path: Path) -> None:
    audit_log = tmp_path / "audit.jsonl"
    service = await start(turnstile, ACME_AUDIT_LOG=str(audit_log), ACME_ALLOWED_EMAIL_DOMAINS="acme.example")
    await service.client.post("/api/v1/auth/register", json=ANN, headers={"X-Request-ID": "r-1"})
    await service.client.post("/api/v1/auth/register", json=BOB, headers={"X-Request-ID": "r-2"})
    metrics = await (await service.client.get("/metrics")).text()
    assert 'turnstile_plugin_resource_open{plugin="acme",resource="acme-audit-log"} 1.0' in metrics
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [(line["status"], line["id"]) for line in lines] == [(201, "r-1"), (403, "r-2")]
    await service.client.close()  # shutdown: the file is closed (the metric is process-wide)
    other = await start(turnstile)
    assert 'resource="acme-audit-log"} 0.0' in await (await other.client.get("/metrics")).text()


async def test_without_a_file_audit_lines_go_to_stderr(
    turnstile: StartService, capsys: pytest.CaptureFixture[str]
) -> None:
    service = await start(turnstile)
    await service.client.post("/api/v1/auth/register", json=ANN)
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/api/v1/auth/register", 201)
