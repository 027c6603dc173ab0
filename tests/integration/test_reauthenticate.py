"""Re-authentication for sensitive changes (contract §4, OWASP ASVS 2.1.6): users changing their
own email or password send `current_password`; missing is a 422 naming it, wrong is a 403,
repeated wrong ones are throttled like logins. Admins changing other users need none.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import (
    Client,
    StackFactory,
    admin_headers,
    assert_problem,
    bearer,
    login,
    register,
)

USERS = "/api/v1/users"
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct-horse-1"
NEW_PASSWORD = "battery-staple-2"


async def signed_in(client: Client, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    user = await register(client, email)
    return user, bearer(await login(client, email, PASSWORD))


@pytest.mark.parametrize("change", [{"password": NEW_PASSWORD}, {"email": "ann.new@example.com"}],
                         ids=["password", "email"])
async def test_changing_your_own_credentials_without_the_current_password_is_422(
    stack: StackFactory, change: dict[str, str]
) -> None:
    client = await stack()
    ann, headers = await signed_in(client, "ann@example.com")
    problem = await assert_problem(await client.patch(f"{USERS}/{ann['id']}", json=change, headers=headers), 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", "current_password"]]
    assert (await login(client, "ann@example.com", PASSWORD))["access_token"]  # nothing changed


async def test_a_wrong_current_password_is_403_and_changes_nothing(stack: StackFactory) -> None:
    client = await stack()
    ann, headers = await signed_in(client, "ann@example.com")
    body = {"password": NEW_PASSWORD, "current_password": "not-my-password"}
    await assert_problem(await client.patch(f"{USERS}/{ann['id']}", json=body, headers=headers), 403)
    assert (await login(client, "ann@example.com", PASSWORD))["access_token"]


async def test_the_right_current_password_changes_the_password_and_never_goes_upstream(stack: StackFactory) -> None:
    client = await stack()
    ann, headers = await signed_in(client, "ann@example.com")
    body = {"password": NEW_PASSWORD, "current_password": PASSWORD, "full_name": "Ann"}
    resp = await client.patch(f"{USERS}/{ann['id']}", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert "current_password" not in await resp.json()
    await assert_problem(await client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD}), 401)
    assert (await login(client, "ann@example.com", NEW_PASSWORD))["access_token"]


async def test_other_changes_of_your_own_need_no_current_password(stack: StackFactory) -> None:
    client = await stack()
    ann, headers = await signed_in(client, "ann@example.com")
    resp = await client.patch(f"{USERS}/{ann['id']}", json={"full_name": "Ann Smith"}, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_a_wrong_current_password_sent_with_any_change_of_your_own_is_403(stack: StackFactory) -> None:
    # Not needed for a name, but sent: a wrong one was ignored, and the change made as if it were right.
    client = await stack()
    ann, headers = await signed_in(client, "ann@example.com")
    body = {"full_name": "Mallory", "current_password": "not-my-password"}
    await assert_problem(await client.patch(f"{USERS}/{ann['id']}", json=body, headers=headers), 403)
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert (await me.json())["full_name"] is None
    right = await client.patch(f"{USERS}/{ann['id']}", json={**body, "current_password": PASSWORD}, headers=headers)
    assert right.status == 200, await right.text()


async def test_an_admin_changing_another_user_needs_none(stack: StackFactory) -> None:
    client = await stack()
    ann = await register(client, "ann@example.com")
    admin = await admin_headers(client)
    body = {"password": NEW_PASSWORD, "email": "ann.b@example.com"}
    resp = await client.patch(f"{USERS}/{ann['id']}", json=body, headers=admin)
    assert resp.status == 200, await resp.text()
    assert (await login(client, "ann.b@example.com", NEW_PASSWORD))["access_token"]


async def test_wrong_current_passwords_are_throttled_like_logins(stack: StackFactory, redis_db: str) -> None:
    client = await stack(redis_url=redis_db)
    ann, headers = await signed_in(client, "ann@example.com")
    wrong = {"password": NEW_PASSWORD, "current_password": "guess-guess"}
    for _ in range(5):
        await assert_problem(await client.patch(f"{USERS}/{ann['id']}", json=wrong, headers=headers), 403)
    right = {"password": NEW_PASSWORD, "current_password": PASSWORD}
    await assert_problem(await client.patch(f"{USERS}/{ann['id']}", json=right, headers=headers), 429)
    # Successes are not counted: another user's changes go on.
    bob, bob_headers = await signed_in(client, "bob@example.com")
    for _ in range(6):
        ok = await client.patch(f"{USERS}/{bob['id']}", json={"full_name": "Bob"}, headers=bob_headers)
        assert ok.status == 200


async def test_only_re_authentications_are_counted_so_parallel_edits_are_never_refused(
    stack: StackFactory, redis_db: str
) -> None:
    client = await stack(redis_url=redis_db)
    ann = await register(client, "ann@example.com")
    admin = await admin_headers(client)
    # More edits at once than the limit: none sends current_password, so none holds a hit.
    edits = [client.patch(f"{USERS}/{ann['id']}", json={"full_name": f"Ann {n}"}, headers=admin) for n in range(12)]
    assert sorted(resp.status for resp in await asyncio.gather(*edits)) == [200] * 12
    # A locked user's other changes go on; re-authentications wait for the window.
    bob, headers = await signed_in(client, "bob@example.com")
    wrong = {"password": NEW_PASSWORD, "current_password": "guess-guess"}
    for _ in range(5):
        await assert_problem(await client.patch(f"{USERS}/{bob['id']}", json=wrong, headers=headers), 403)
    assert (await client.patch(f"{USERS}/{bob['id']}", json={"full_name": "Bob"}, headers=headers)).status == 200
    right = {"email": "bob.b@example.com", "current_password": PASSWORD}
    await assert_problem(await client.patch(f"{USERS}/{bob['id']}", json=right, headers=headers), 429)


async def test_the_openapi_document_names_current_password(stack: StackFactory) -> None:
    client = await stack()
    document = await (await client.get("/api/docs/swagger.json")).json()
    assert "current_password" in document["components"]["schemas"]["UserPatch"]["properties"]
    patch = document["paths"]["/api/v1/users/{id}"]["patch"]
    assert {"403", "422", "429"} <= set(patch["responses"])
