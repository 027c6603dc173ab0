"""The test kit (app/testing.py, the `turnstile` pytest fixture): the whole service on embedded
defaults with given pipelines, plugins and environment; the events it published; its mails."""

from __future__ import annotations

import pytest

from app.settings import SettingsError
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.services import ROOT

CHEAP = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1"}
ANN = {"email": "Ann@Example.com", "password": "correct-horse-1"}


async def test_the_whole_service_with_the_default_pipelines(turnstile: StartService) -> None:
    service = await turnstile(ROOT / "pipelines.toml", env=CHEAP)
    created = await service.client.post("/api/v1/auth/register", json=ANN, headers={"X-Request-ID": "kit-1"})
    assert created.status == 201, await created.text()
    [event] = service.events()
    assert (event["type"], event["request_id"], event["data"]["email"]) == ("user.created", "kit-1", "ann@example.com")
    login = await service.client.post("/api/v1/auth/login", json=ANN)
    assert login.status == 200
    ready = await (await service.client.get("/readyz")).json()
    assert ready["checks"]["data_service"] == "embedded"


async def test_the_process_environment_is_not_read(turnstile: StartService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("PORT", "not a port")
    service = await turnstile(CORE_PIPELINES, plugins=["tests.fixtures.sample_plugin"], entrypoints=False)
    ready = await (await service.client.get("/readyz")).json()
    assert ready["checks"]["redis"] == "embedded"


async def test_a_restart_keeps_the_embedded_data(turnstile: StartService) -> None:
    first = await turnstile(ROOT / "pipelines.toml", env=CHEAP)
    assert (await first.client.post("/api/v1/auth/register", json=ANN)).status == 201
    await first.client.close()
    again = await turnstile(ROOT / "pipelines.toml", env=CHEAP)
    assert (await again.client.post("/api/v1/auth/login", json=ANN)).status == 200
    assert again.var_dir == first.var_dir


async def test_mails_are_read_from_where_the_embedded_transport_writes_them(turnstile: StartService) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=["tests.fixtures.sample_plugin"], entrypoints=False)
    assert service.mails() == []
    folder = service.var_dir / "mail"
    folder.mkdir(parents=True)
    (folder / "0001.eml").write_bytes(
        b"From: turnstile@example.com\r\nTo: ann@example.com\r\nSubject: Verify your address\r\n\r\nHello Ann\r\n"
    )
    [mail] = service.mails()
    assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Verify your address")
    assert mail.get_content().strip() == "Hello Ann"


async def test_bad_settings_are_reported_one_line_each(turnstile: StartService) -> None:
    with pytest.raises(SettingsError) as info:
        await turnstile(ROOT / "pipelines.toml", env={"JWT_SECRET": "short", "ARGON2_TIME_COST": "0"})
    assert info.value.problems == [
        "JWT_SECRET (or the file JWT_SECRET_FILE names): must be at least 32 bytes for HMAC signing (RFC 7518 §3.2)",
        "ARGON2_TIME_COST='0': expected a positive whole number",
    ]


async def test_pipelines_may_be_toml_text(turnstile: StartService) -> None:
    service = await turnstile(
        '[[pipelines]]\nname = "hello"\nroute = "GET /hello/{who}"\nsteps = [{ use = "echo" }]\n',
        plugins=["tests.fixtures.sample_plugin"], entrypoints=False,
    )
    assert (await (await service.client.get("/hello/ann")).json())["params"] == {"who": "ann"}
