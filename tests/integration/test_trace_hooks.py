"""`TURNSTILE_TRACE_HOOKS=1` logs every hook call with its arguments and result, and no secret
(contract §11): passwords, argon2 hashes and tokens are written as ``***``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.logs import JsonFormatter
from tests.integration.conftest import ADMIN_PASSWORD, Client, StackFactory, admin_headers, bearer

HOOKS_LOGGER = "turnstile.hooks"
FIRST = "first-Secret-pw-1"
SECOND = "second-Secret-pw-2"
MASK = "***"


async def ok(client: Client, method: str, path: str, status: int, **kwargs: Any) -> Any:
    resp = await client.request(method, path, **kwargs)
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.content_length else None


async def journey(client: Client) -> list[str]:
    """Register, log in (JSON and form), refresh, have the password changed, log in with the
    new one, log out. Returns every token the service handed out."""
    ann = await ok(client, "POST", "/api/v1/auth/register", 201, json={"email": "ann@example.com", "password": FIRST})
    first = await ok(client, "POST", "/api/v1/auth/login", 200, json={"email": "ann@example.com", "password": FIRST})
    form = await ok(client, "POST", "/api/v1/auth/login", 200,
                    data={"grant_type": "password", "username": "ann@example.com", "password": FIRST})
    refreshed = await ok(client, "POST", "/api/v1/auth/refresh", 200, json={"refresh_token": form["refresh_token"]})
    await ok(client, "GET", f"/api/v1/users/{ann['id']}", 200, headers=bearer(first))
    admin = await admin_headers(client)
    await ok(client, "PATCH", f"/api/v1/users/{ann['id']}", 200, json={"password": SECOND}, headers=admin)
    second = await ok(client, "POST", "/api/v1/auth/login", 200, json={"email": "ann@example.com", "password": SECOND})
    await ok(client, "POST", "/api/v1/auth/logout", 204, json={"refresh_token": second["refresh_token"]},
             headers=bearer(second))
    tokens = [admin["Authorization"].removeprefix("Bearer ")]
    for pair in (first, form, refreshed, second):
        tokens += [pair["access_token"], pair["refresh_token"]]
    return tokens


def secrets_in(text: str, tokens: list[str]) -> list[str]:
    found = [secret for secret in (FIRST, SECOND, ADMIN_PASSWORD, *tokens) if secret in text]
    return found + (["$argon2"] if "$argon2" in text else [])


async def test_traced_hook_calls_show_no_password_hash_or_token(
    stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await stack(trace_hooks=True)
    tokens = await journey(client)

    traced = [record for record in caplog.records if record.name == HOOKS_LOGGER]
    lines = [f"{record.getMessage()}\n{JsonFormatter().format(record)}\n{record.args!r}" for record in traced]
    assert [found for line in lines if (found := secrets_in(line, tokens))] == []
    for hook in ("transform_request", "check_request", "transform_upstream", "transform_response"):
        assert any(f"hook {hook}" in line for line in lines), hook
    # The secrets were there to log, and were masked: in the bodies and in the upstream records.
    assert any("'password': '***'" in line for line in lines)
    assert any("'password_hash': '***'" in line for line in lines)
    assert any("'refresh_token': '***'" in line for line in lines)
    everything = "\n".join(f"{r.getMessage()}\n{r.args!r}" for r in caplog.records)
    assert secrets_in(everything, tokens) == []


async def test_without_tracing_no_hook_is_logged(stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await journey(await stack())
    assert [record for record in caplog.records if record.name == HOOKS_LOGGER] == []
