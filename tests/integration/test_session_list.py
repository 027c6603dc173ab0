"""A user's sessions (contract §13): listed with their times and which one is asking, and ended
one at a time, so that session's tokens are refused at once on every instance; and a pipeline
that requires a verified user."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.integration.accounts import (
    ME,
    PASSWORD,
    SESSIONS,
    VERIFY,
    inbox_fixture,  # noqa: F401  # the `inbox` fixture
    verification_token,
)
from tests.integration.conftest import DEFAULT_PIPELINES, StackFactory, assert_problem, bearer, login, register
from tests.smtp import SmtpInbox

REFRESH = "/api/v1/auth/refresh"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def test_a_user_lists_their_live_sessions_newest_use_first(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    await register(client, "bob@example.com")
    phone = await login(client, "ann@example.com", PASSWORD)
    laptop = await login(client, "ann@example.com", PASSWORD)
    await login(client, "bob@example.com", PASSWORD)
    refreshed = await client.post(REFRESH, json={"refresh_token": phone["refresh_token"]})
    phone = await refreshed.json()

    resp = await client.get(SESSIONS, headers=bearer(laptop))
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    items = (await resp.json())["items"]
    assert [item["current"] for item in items] == [False, True]  # the phone refreshed last
    assert all(RFC3339.match(item["created_at"]) and RFC3339.match(item["last_used_at"]) for item in items)
    assert items[0]["last_used_at"] > items[0]["created_at"]
    assert items[1]["last_used_at"] == items[1]["created_at"]

    await client.post("/api/v1/auth/logout", json={"refresh_token": phone["refresh_token"]}, headers=bearer(phone))
    items = (await (await client.get(SESSIONS, headers=bearer(laptop))).json())["items"]
    assert [item["current"] for item in items] == [True]
    await assert_problem(await client.get(SESSIONS), 401)


async def test_ending_a_session_refuses_its_tokens_at_once_and_spares_the_others(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    phone, laptop = await login(client, "ann@example.com", PASSWORD), await login(client, "ann@example.com", PASSWORD)
    items = (await (await client.get(SESSIONS, headers=bearer(laptop))).json())["items"]
    [phone_session] = [item["id"] for item in items if not item["current"]]

    resp = await client.delete(f"{SESSIONS}/{phone_session}", headers=bearer(laptop))
    assert resp.status == 204
    await assert_problem(await client.get(ME, headers=bearer(phone)), 401)
    await assert_problem(await client.post(REFRESH, json={"refresh_token": phone["refresh_token"]}), 401)
    assert (await client.get(ME, headers=bearer(laptop))).status == 200
    await assert_problem(await client.delete(f"{SESSIONS}/{phone_session}", headers=bearer(laptop)), 404)


async def test_sessions_ended_all_at_once_by_a_password_change_are_no_longer_listed(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    ann = await register(client, "ann@example.com")
    phone, laptop = await login(client, "ann@example.com", PASSWORD), await login(client, "ann@example.com", PASSWORD)
    items = (await (await client.get(SESSIONS, headers=bearer(laptop))).json())["items"]
    [phone_session] = [item["id"] for item in items if not item["current"]]

    changed = await client.patch(f"/api/v1/users/{ann['id']}", headers=bearer(laptop),
                                 json={"password": "new-horse-22", "current_password": PASSWORD})
    assert changed.status == 200, await changed.text()
    await assert_problem(await client.get(ME, headers=bearer(phone)), 401)

    # The change ended every session (their tokens are refused): none of them is listed as
    # live, nor can one be ended again.
    tablet = await login(client, "ann@example.com", "new-horse-22")
    items = (await (await client.get(SESSIONS, headers=bearer(tablet))).json())["items"]
    assert [item["current"] for item in items] == [True]
    await assert_problem(await client.delete(f"{SESSIONS}/{phone_session}", headers=bearer(tablet)), 404)


async def test_another_users_session_or_a_made_up_id_is_a_404(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    await register(client, "bob@example.com")
    ann, bob = await login(client, "ann@example.com", PASSWORD), await login(client, "bob@example.com", PASSWORD)
    [bobs] = [item["id"] for item in (await (await client.get(SESSIONS, headers=bearer(bob))).json())["items"]]
    await assert_problem(await client.delete(f"{SESSIONS}/{bobs}", headers=bearer(ann)), 404)
    await assert_problem(await client.delete(f"{SESSIONS}/not-a-session", headers=bearer(ann)), 404)
    assert (await client.get(ME, headers=bearer(bob))).status == 200


async def test_a_session_ended_on_one_instance_is_refused_by_the_other_at_once(
    stack: StackFactory, redis_db: str
) -> None:
    one, other = await stack(redis_url=redis_db), await stack(redis_url=redis_db)
    await register(one, "ann@example.com")
    phone, laptop = await login(one, "ann@example.com", PASSWORD), await login(one, "ann@example.com", PASSWORD)
    for _ in range(3):  # the other instance has the session in its local mirror
        assert (await other.get(ME, headers=bearer(phone))).status == 200
    items = (await (await other.get(SESSIONS, headers=bearer(laptop))).json())["items"]
    [phone_session] = [item["id"] for item in items if not item["current"]]
    assert (await one.delete(f"{SESSIONS}/{phone_session}", headers=bearer(laptop))).status == 204
    await assert_problem(await other.get(ME, headers=bearer(phone)), 401)


VERIFIED_ONLY = """
[[pipelines]]
name = "orders"
route = "GET /api/v1/orders"
steps = [
  { use = "auth", allow = ["authenticated"], verified = true },
  { use = "data-fetch", call = "GET /api/v1/users/{actor}", response = "User" },
]
"""


async def test_a_pipeline_may_require_a_verified_user(
    inbox: SmtpInbox, stack: StackFactory, tmp_path: Path
) -> None:
    pipelines = tmp_path / "verified.toml"
    pipelines.write_text(DEFAULT_PIPELINES.read_text() + VERIFIED_ONLY)
    client = await stack(pipelines_file=pipelines)
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    body = await assert_problem(await client.get("/api/v1/orders", headers=bearer(tokens)), 403)
    assert "verify" in body["detail"].lower()
    token = await verification_token(inbox, "ann@example.com")
    assert (await client.post(VERIFY, json={"token": token})).status == 200
    assert (await client.get("/api/v1/orders", headers=bearer(tokens))).status == 200  # the same token
    await assert_problem(await client.get("/api/v1/orders"), 401)
