"""TURNSTILE_ADMIN_EMAIL/PASSWORD only create (contract §3): start-up never takes an account over.

Attack written as a test: someone registers the address the operator will later configure as
the admin (or that the admin renamed theirs away from); at the next restart that account must
not become admin, must not be re-enabled, and keeps its own password. `turnstile create-admin`
is the deliberate way to promote.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from app import hookimpl
from app.cli import main
from app.keys import settings_key
from plugins.users import startup_admin
from tests.integration.amqp_capture import eventually
from tests.integration.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    JWT_SECRET,
    Client,
    StackFactory,
    admin_headers,
    assert_problem,
    bearer,
    login,
    register,
)
from tests.integration.faults import FaultProxy

OWN_PASSWORD = "their-own-password-1"
CONFIGURED_PASSWORD = "configured-admin-password-1"
WARNING = (
    "admin from TURNSTILE_ADMIN_EMAIL not created: an account with that email exists; start-up never "
    "promotes, re-enables or changes an account (use `turnstile create-admin` to promote it)"
)


async def restart_with_admin(stack: StackFactory, before: Client, email: str) -> Client:
    """Stop `before`, then start the service again with TURNSTILE_ADMIN_EMAIL=email."""
    await before.close()
    return await stack(env={"TURNSTILE_ADMIN_EMAIL": email, "TURNSTILE_ADMIN_PASSWORD": CONFIGURED_PASSWORD})


async def roles_of(client: Client, email: str, password: str) -> list[str]:
    me = await client.get("/api/v1/auth/me", headers=bearer(await login(client, email, password)))
    assert me.status == 200, await me.text()
    roles: list[str] = (await me.json())["roles"]
    return roles


@pytest.mark.parametrize(
    "configured", ["boss@example.com", " Boss@Example.COM ", "\uff42oss@example.com"],
    ids=["same", "case-and-spaces", "full-width"],
)
async def test_an_existing_account_is_not_promoted_at_start_up(
    stack: StackFactory, caplog: pytest.LogCaptureFixture, configured: str
) -> None:
    first = await stack()
    await register(first, "boss@example.com", OWN_PASSWORD)
    caplog.set_level(logging.INFO, logger="turnstile.admin")
    caplog.clear()  # the first start's own admin line, when another test left INFO on
    again = await restart_with_admin(stack, first, configured)
    assert await roles_of(again, "boss@example.com", OWN_PASSWORD) == ["user"]
    wrong = await again.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": CONFIGURED_PASSWORD})
    await assert_problem(wrong, 401)  # the password is the account's own, not the configured one
    said = [r.getMessage() for r in caplog.records if r.name == "turnstile.admin"]
    assert said == [WARNING]
    assert CONFIGURED_PASSWORD not in caplog.text


async def test_a_disabled_account_stays_disabled(stack: StackFactory) -> None:
    first = await stack()
    user = await register(first, "boss@example.com", OWN_PASSWORD)
    disabled = await first.patch(f"/api/v1/users/{user['id']}", json={"is_active": False},
                                 headers=await admin_headers(first))
    assert disabled.status == 200, await disabled.text()
    again = await restart_with_admin(stack, first, "boss@example.com")
    for password in (OWN_PASSWORD, CONFIGURED_PASSWORD):
        resp = await again.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": password})
        assert resp.status in (401, 403), await resp.text()
    stored = await again.get(f"/api/v1/users/{user['id']}", headers=await admin_headers(again))
    assert (await stored.json())["is_active"] is False
    assert (await stored.json())["roles"] == ["user"]


async def test_a_missing_admin_is_created_once(stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="turnstile.admin")
    first = await stack(env={"TURNSTILE_ADMIN_EMAIL": "root@example.com",
                             "TURNSTILE_ADMIN_PASSWORD": CONFIGURED_PASSWORD})
    assert await roles_of(first, "root@example.com", CONFIGURED_PASSWORD) == ["admin", "user"]
    again = await restart_with_admin(stack, first, "root@example.com")
    assert await roles_of(again, "root@example.com", CONFIGURED_PASSWORD) == ["admin", "user"]
    assert [r.getMessage() for r in caplog.records if r.name == "turnstile.admin"] == [
        "admin from TURNSTILE_ADMIN_EMAIL: created",
        "admin from TURNSTILE_ADMIN_EMAIL: user.created event of user 1 written to the events log (no broker)",
        # announced (§9), once
        "admin from TURNSTILE_ADMIN_EMAIL: the account exists and is an active admin; left unchanged",
    ]


async def test_create_admin_still_promotes(
    stack: StackFactory, dataservice: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await stack()
    user = await register(client, "boss@example.com", OWN_PASSWORD)
    disabled = await client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False},
                                  headers=await admin_headers(client))
    assert disabled.status == 200
    for name, value in {"DATA_SERVICE_URL": dataservice, "TURNSTILE_ADMIN_PASSWORD": CONFIGURED_PASSWORD,
                        "JWT_SECRET": JWT_SECRET, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8"}.items():
        monkeypatch.setenv(name, value)
    # `turnstile create-admin` (the users plugin's command) runs its own event loop, so it runs
    # in a thread beside this one.
    assert await asyncio.to_thread(main, ["create-admin", "--email", "Boss@Example.com"]) == 0
    # Promoted and re-enabled on purpose; the password is still the account's own.
    assert await roles_of(client, "boss@example.com", OWN_PASSWORD) == ["admin", "user"]


async def test_a_promotion_from_the_command_line_reaches_a_running_service_through_its_event(
    stack: StackFactory, redis_db: str, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=amqp_url)
    settings = client.app[settings_key]
    assert settings.data_service_url is not None
    user = await register(client, "boss@example.com", OWN_PASSWORD)
    admin = await admin_headers(client)
    path = f"/api/v1/users/{user['id']}"
    await client.get(path, headers=admin)
    cached = await client.get(path, headers=admin)
    assert (cached.headers["X-Cache"], (await cached.json())["roles"]) == ("HIT", ["user"])
    # The command, as an operator runs it beside the service: the same data service, Redis and broker.
    for name, value in {"DATA_SERVICE_URL": settings.data_service_url, "REDIS_URL": redis_db, "RABBITMQ_URL": amqp_url,
                        "EVENTS_EXCHANGE": settings.events_exchange, "TURNSTILE_ADMIN_PASSWORD": CONFIGURED_PASSWORD,
                        "JWT_SECRET": JWT_SECRET, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8"}.items():
        monkeypatch.setenv(name, value)

    assert await asyncio.to_thread(main, ["create-admin", "--email", "boss@example.com"]) == 0

    # The command published `user.updated`; the service's default subscription dropped the
    # cached copy, so the next read shows the promotion instead of the old roles.
    async def promoted() -> bool:
        resp = await client.get(path, headers=admin)
        return bool((await resp.json())["roles"] == ["admin", "user"])

    await eventually(promoted, 10, "the running service served the promoted user")


async def test_a_data_service_down_at_start_up_delays_the_admin_not_the_start(
    stack: StackFactory, dataservice: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, the start-up failed, so on Kubernetes every new pod crash-looped through a
    # data-service outage, though each would serve (503 where the data service is needed).
    monkeypatch.setattr(startup_admin, "RETRY_FIRST_S", 0.1)
    monkeypatch.setattr(startup_admin, "RETRY_MAX_S", 0.2)
    proxy = FaultProxy(dataservice)
    await proxy.start()
    await proxy.go_down()
    try:
        client = await stack(data_service_url=proxy.url, data_service_retries=0, breaker_cooldown_s=0.2)
        assert (await client.get("/healthz")).status == 200
        assert "trying again in the background" in caplog.text
        await proxy.come_back()

        async def created() -> bool:
            resp = await client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            return resp.status == 200

        await eventually(created, 15, "the admin was created once the data service came back")
    finally:
        await proxy.close()


async def test_an_admin_email_without_its_password_is_said_not_ignored(
    stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="turnstile.admin"):
        client = await stack(env={"TURNSTILE_ADMIN_EMAIL": "root@example.com", "TURNSTILE_ADMIN_PASSWORD": ""})
    assert [r.getMessage() for r in caplog.records if r.name == "turnstile.admin"] == [
        "admin from TURNSTILE_ADMIN_EMAIL: not created, TURNSTILE_ADMIN_PASSWORD is not set (both are needed)",
    ]
    await assert_problem(await client.post("/api/v1/auth/login",
                                           json={"email": "root@example.com", "password": ADMIN_PASSWORD}), 401)


class TenantStamp:
    """A team's enrich_event: every event says which tenant it is of."""

    @hookimpl
    def enrich_event(self, request: Any, pipeline: Any, event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "data": {**event["data"], "tenant": "acme"}}


async def test_the_start_up_admins_event_is_enriched_as_a_pipelines_is(stack: StackFactory, tmp_path: Path) -> None:
    # The hooks ran for the events of pipelines only: a consumer keyed on the tenant never
    # placed the admin.
    await stack(plugins=(TenantStamp(),))
    events = [orjson.loads(line) for line in (tmp_path / "var" / "events.jsonl").read_bytes().splitlines()]
    [created] = [event for event in events if event["type"] == "user.created"]
    assert created["data"]["email"] == ADMIN_EMAIL
    assert created["data"]["tenant"] == "acme"
