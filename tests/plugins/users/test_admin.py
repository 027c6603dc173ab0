from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import plugins.users
from app.clients.dataservice import DataServiceClient, DataServiceOptions
from app.commands import CommandContext
from app.dataservice import start_dataservice
from app.keys import data_service_key, publisher_key
from app.main import load_configuration, prepare_app
from app.settings import SettingsError
from plugins.auth.passwords import Argon2Hasher as PasswordHasher
from plugins.users.admin import CREATE_ADMIN, create_admin_if_absent, ensure_admin
from plugins.users.rules import normalise_email

CHEAP = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1"}


class Announced(list[tuple[str, Any]]):
    """An `Announce` that keeps what it was given: (event type, the data service's answer)."""

    async def __call__(self, event_type: str, record: Any) -> None:
        self.append((event_type, record))


def events_written(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "var" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def context(tmp_path: Path, **env: str) -> CommandContext:
    """What `turnstile create-admin` gets, from an environment of cheap argon2 costs and `env`."""
    settings, pm, _values = load_configuration({**CHEAP, "TURNSTILE_VAR_DIR": str(tmp_path / "var"), **env})
    return CommandContext(settings, pm, lambda: prepare_app(settings, pm))


def create_admin(tmp_path: Path, email: str, **env: str) -> int:
    """`turnstile create-admin --email <email>` as the users plugin runs it."""
    status = CREATE_ADMIN.run(argparse.Namespace(command="create-admin", email=email), context(tmp_path, **env))
    assert isinstance(status, int)  # the users plugin's run is synchronous
    return status


def started_app(tmp_path: Path, data_service: DataServiceClient, env: Mapping[str, str]) -> web.Application:
    """An app as prepared for start-up (plugin settings, the auth plugin's hasher), whose data
    service is the test's."""
    ctx = context(tmp_path, **env)
    app = ctx.app
    app[data_service_key] = data_service
    return app


async def find(client: DataServiceClient, email: str) -> dict[str, object]:
    reply = await client.request("GET", "/api/v1/users", params={"email": email})
    [record] = reply.data["items"]
    assert isinstance(record, dict)
    return record


async def test_ensure_admin_creates_then_leaves_unchanged(
    data_service: DataServiceClient, hasher: PasswordHasher
) -> None:
    announced = Announced()
    assert await ensure_admin(data_service, hasher, " Root@Example.com", "correct horse", announced) == "created"
    assert await ensure_admin(data_service, hasher, "root@example.com", "correct horse", announced) == "unchanged"
    record = await find(data_service, "root@example.com")
    assert [(kind, user["id"]) for kind, user in announced] == [("user.created", record["id"])]
    assert record["roles"] == ["admin", "user"]
    assert record["is_active"] is True
    assert isinstance(record["password_hash"], str)
    assert await hasher.verify(record["password_hash"], "correct horse")


async def test_ensure_admin_promotes_an_existing_user(data_service: DataServiceClient, hasher: PasswordHasher) -> None:
    own_hash = await hasher.hash("their own password")
    await data_service.request(
        "POST",
        "/api/v1/users/",
        json={
            "email": "ada@example.com",
            "password_hash": own_hash,
            "full_name": "Ada",
            "roles": ["user"],
            "is_active": False,
        },
    )
    announced = Announced()
    assert await ensure_admin(data_service, hasher, "ada@example.com", "another password", announced) == "promoted"
    record = await find(data_service, "ada@example.com")
    assert record["roles"] == ["admin", "user"]
    assert record["is_active"] is True
    assert record["password_hash"] == own_hash  # promoting never resets a password
    assert await ensure_admin(data_service, hasher, "ada@example.com", "another password", announced) == "unchanged"
    [(kind, user)] = announced  # the promotion, with the user as saved
    assert (kind, user["roles"], user["is_active"]) == ("user.updated", ["admin", "user"], True)


async def test_create_admin_if_absent_never_changes_an_existing_account(
    data_service: DataServiceClient, hasher: PasswordHasher
) -> None:
    own_hash = await hasher.hash("their own password")
    await data_service.request(
        "POST",
        "/api/v1/users/",
        json={"email": "ada@example.com", "password_hash": own_hash, "roles": ["user"], "is_active": False},
    )
    before = await find(data_service, "ada@example.com")
    announced = Announced()
    outcome = await create_admin_if_absent(data_service, hasher, "\uff41da@Example.com ", "another password", announced)
    assert outcome == "exists"
    assert await find(data_service, "ada@example.com") == before
    assert announced == []


async def test_create_admin_if_absent_creates_a_missing_admin(
    data_service: DataServiceClient, hasher: PasswordHasher
) -> None:
    announced = Announced()
    created = await create_admin_if_absent(data_service, hasher, "Root@Example.com", "correct horse", announced)
    assert created == "created"
    record = await find(data_service, "root@example.com")
    assert record["roles"] == ["admin", "user"]
    assert await create_admin_if_absent(data_service, hasher, "root@example.com", "other horse", announced) == "exists"
    assert await find(data_service, "root@example.com") == record
    assert [(kind, user["id"]) for kind, user in announced] == [("user.created", record["id"])]


def test_emails_are_trimmed_nfkc_normalised_and_lower_cased() -> None:
    assert normalise_email("  \uff21\uff24\uff21@Example.COM\t") == "ada@example.com"


async def test_startup_hook_ensures_the_configured_admin(data_service: DataServiceClient, tmp_path: Path) -> None:
    env = {"TURNSTILE_ADMIN_EMAIL": "root@example.com", "TURNSTILE_ADMIN_PASSWORD": "correct horse"}
    app = started_app(tmp_path, data_service, env)
    await app[publisher_key].start()
    await plugins.users.startup(app)
    await plugins.users.startup(app)
    record = await find(data_service, "root@example.com")
    assert record["roles"] == ["admin", "user"]
    [event] = events_written(tmp_path)  # created once, announced once
    assert (event["type"], event["data"]["id"]) == ("user.created", record["id"])
    assert "password_hash" not in event["data"]


async def test_the_admin_password_may_come_from_a_file(data_service: DataServiceClient, tmp_path: Path) -> None:
    secret = tmp_path / "admin-password"
    secret.write_text("correct horse\n")
    env = {"TURNSTILE_ADMIN_EMAIL": "root@example.com", "TURNSTILE_ADMIN_PASSWORD_FILE": str(secret)}
    await plugins.users.startup(started_app(tmp_path, data_service, env))
    record = await find(data_service, "root@example.com")
    hasher = PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)
    assert await hasher.verify(str(record["password_hash"]), "correct horse")


async def test_startup_hook_does_nothing_without_both_settings(
    data_service: DataServiceClient, tmp_path: Path
) -> None:
    app = started_app(tmp_path, data_service, {"TURNSTILE_ADMIN_EMAIL": "root@example.com"})
    await plugins.users.startup(app)
    reply = await data_service.request("GET", "/api/v1/users")
    assert reply.data["total"] == 0


def test_create_admin_command_uses_the_embedded_data_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create_admin(tmp_path, "Root@example.com", TURNSTILE_ADMIN_PASSWORD="correct horse") == 0
    assert create_admin(tmp_path, "root@example.com", TURNSTILE_ADMIN_PASSWORD="correct horse") == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["admin root@example.com: created", "admin root@example.com: unchanged"]
    assert "correct horse" not in out
    assert (tmp_path / "var" / "data.sqlite3").is_file()
    # Announced as every write is (no broker: the events file), with the public user only.
    [event] = events_written(tmp_path)
    assert event["type"] == "user.created"
    assert event["data"]["email"] == "root@example.com"
    assert event["data"]["roles"] == ["admin", "user"]
    assert "password_hash" not in event["data"]


async def test_create_admin_command_talks_to_data_service_url(tmp_path: Path) -> None:
    runner, base_url = await start_dataservice(tmp_path / "remote.sqlite3")
    try:
        # The command runs its own event loop, so it runs in a thread beside this one.
        code = await asyncio.to_thread(
            create_admin, tmp_path, "root@example.com", DATA_SERVICE_URL=base_url,
            TURNSTILE_ADMIN_PASSWORD="correct horse",
        )
        assert code == 0
        async with DataServiceClient(DataServiceOptions(base_url=base_url)) as client:
            assert (await find(client, "root@example.com"))["roles"] == ["admin", "user"]
        assert not (tmp_path / "var" / "data.sqlite3").exists()  # the embedded data service never ran
    finally:
        await runner.cleanup()


def test_a_short_admin_password_or_a_bad_admin_email_is_a_settings_error(tmp_path: Path) -> None:
    # For the start-up admin as for create-admin: the rules a user's own registration has.
    with pytest.raises(SettingsError) as refused:
        context(tmp_path, TURNSTILE_ADMIN_EMAIL="not an email", TURNSTILE_ADMIN_PASSWORD="short")
    assert refused.value.problems == [
        "TURNSTILE_ADMIN_EMAIL='not an email': expected an email address a user could register",
        "TURNSTILE_ADMIN_PASSWORD: expected 8 to 128 characters",
    ]


def test_create_admin_command_refuses_a_bad_email(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert create_admin(tmp_path, "someone,else@example.com", TURNSTILE_ADMIN_PASSWORD="correct horse") == 2
    assert "--email must be an email address" in capsys.readouterr().err


def test_create_admin_command_prompts_when_no_password_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["correct horse", "correct horse"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    assert create_admin(tmp_path, "root@example.com") == 0


def test_create_admin_command_needs_a_password_hasher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the auth plugin disabled nothing hashes passwords: the command refuses, sends nothing."""
    code = create_admin(tmp_path, "root@example.com", TURNSTILE_ADMIN_PASSWORD="correct horse",
                        TURNSTILE_DISABLE_PLUGINS="auth")
    assert code == 2
    assert "no plugin hashes passwords" in capsys.readouterr().err
    assert not (tmp_path / "var" / "data.sqlite3").exists()
