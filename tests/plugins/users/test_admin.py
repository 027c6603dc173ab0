from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

import plugins.users
from app.admin import create_admin_command, create_admin_if_absent, ensure_admin, normalise_email
from app.clients.dataservice import DataServiceClient, DataServiceOptions
from app.dataservice import start_dataservice
from app.keys import data_service_key, settings_key
from app.passwords import PasswordHasher
from app.settings import Settings


async def find(client: DataServiceClient, email: str) -> dict[str, object]:
    reply = await client.request("GET", "/api/v1/users", params={"email": email})
    [record] = reply.data["items"]
    assert isinstance(record, dict)
    return record


async def test_ensure_admin_creates_then_leaves_unchanged(
    data_service: DataServiceClient, hasher: PasswordHasher
) -> None:
    assert await ensure_admin(data_service, hasher, " Root@Example.com", "correct horse") == "created"
    assert await ensure_admin(data_service, hasher, "root@example.com", "correct horse") == "unchanged"
    record = await find(data_service, "root@example.com")
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
    assert await ensure_admin(data_service, hasher, "ada@example.com", "another password") == "promoted"
    record = await find(data_service, "ada@example.com")
    assert record["roles"] == ["admin", "user"]
    assert record["is_active"] is True
    assert record["password_hash"] == own_hash  # promoting never resets a password
    assert await ensure_admin(data_service, hasher, "ada@example.com", "another password") == "unchanged"


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
    assert await create_admin_if_absent(data_service, hasher, "\uff41da@Example.com ", "another password") == "exists"
    assert await find(data_service, "ada@example.com") == before


async def test_create_admin_if_absent_creates_a_missing_admin(
    data_service: DataServiceClient, hasher: PasswordHasher
) -> None:
    assert await create_admin_if_absent(data_service, hasher, "Root@Example.com", "correct horse") == "created"
    record = await find(data_service, "root@example.com")
    assert record["roles"] == ["admin", "user"]
    assert await create_admin_if_absent(data_service, hasher, "root@example.com", "other horse") == "exists"
    assert await find(data_service, "root@example.com") == record


def test_emails_are_trimmed_nfkc_normalised_and_lower_cased() -> None:
    assert normalise_email("  \uff21\uff24\uff21@Example.COM\t") == "ada@example.com"


async def test_startup_hook_ensures_the_configured_admin(
    data_service: DataServiceClient, settings: Settings, tmp_path: Path
) -> None:
    app = web.Application()
    app[settings_key] = Settings(
        var_dir=tmp_path,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        argon2_parallelism=1,
        admin_email="root@example.com",
        admin_password="correct horse",
    )
    app[data_service_key] = data_service
    await plugins.users.startup(app)
    await plugins.users.startup(app)
    assert (await find(data_service, "root@example.com"))["roles"] == ["admin", "user"]


async def test_startup_hook_does_nothing_without_both_settings(
    data_service: DataServiceClient, settings: Settings
) -> None:
    app = web.Application()
    app[settings_key] = settings
    app[data_service_key] = data_service
    await plugins.users.startup(app)
    reply = await data_service.request("GET", "/api/v1/users")
    assert reply.data["total"] == 0


def test_create_admin_command_uses_the_embedded_data_service(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TURNSTILE_ADMIN_PASSWORD", "correct horse")
    assert create_admin_command(settings, "Root@example.com") == 0
    assert create_admin_command(settings, "root@example.com") == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["admin root@example.com: created", "admin root@example.com: unchanged"]
    assert "correct horse" not in out
    assert (settings.var_dir / "data.sqlite3").is_file()


async def test_create_admin_command_talks_to_data_service_url(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, base_url = await start_dataservice(tmp_path / "remote.sqlite3")
    try:
        remote = Settings(
            var_dir=tmp_path / "unused",
            data_service_url=base_url,
            argon2_time_cost=1,
            argon2_memory_kib=8,
            argon2_parallelism=1,
            admin_password="correct horse",
        )
        # The command runs its own event loop, so it runs in a thread beside this one.
        assert await asyncio.to_thread(create_admin_command, remote, "root@example.com") == 0
        async with DataServiceClient(DataServiceOptions(base_url=base_url)) as client:
            assert (await find(client, "root@example.com"))["roles"] == ["admin", "user"]
        assert not (tmp_path / "unused").exists()
    finally:
        await runner.cleanup()


def test_create_admin_command_refuses_a_short_password(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TURNSTILE_ADMIN_PASSWORD", "short")
    assert create_admin_command(settings, "root@example.com") == 2
    assert "8 to 128" in capsys.readouterr().err


def test_create_admin_command_prompts_when_no_password_is_set(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TURNSTILE_ADMIN_PASSWORD", raising=False)
    answers = iter(["correct horse", "correct horse"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    assert create_admin_command(settings, "root@example.com") == 0
