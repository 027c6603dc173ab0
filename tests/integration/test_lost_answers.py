"""Writes the data service applied but whose answer was lost (a 500 after the commit, a
timeout): the record is read back, and what may have changed is followed (contract §4, §9, §9a)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.accounts import (
    VERIFY,
    events_written,
    inbox_fixture,  # noqa: F401  # the `inbox` fixture
    verification_token,
)
from tests.integration.amqp_capture import body_of, capture, metric, next_message, wait_connected
from tests.integration.conftest import (
    Client,
    StackFactory,
    admin_headers,
    assert_problem,
    bearer,
    login,
    register,
)
from tests.integration.faults import FaultProxy
from tests.smtp import SmtpInbox


async def _count(client: Client, result: str) -> float:
    # The process's metrics outlive a test (stacks run in the test process): compare counts.
    return await metric(client, "turnstile_uncertain_writes_total", result=result) or 0.0


async def _ann(client: Client, admin: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Ann, signed in, her record in the cache (read once by the admin)."""
    user = await register(client, "ann@example.com", "correct-horse-1")
    ann_id = int(user["id"])
    assert (await client.get(f"/api/v1/users/{ann_id}", headers=admin)).headers["X-Cache"] == "MISS"
    return ann_id, bearer(await login(client, "ann@example.com", "correct-horse-1"))


async def _signed_out_and_read_afresh(
    client: Client, admin: dict[str, str], ann_id: int, ann: dict[str, str]
) -> dict[str, Any]:
    """Ann's session ended and her record read from the data service, not the cache: that record."""
    assert (await client.get("/api/v1/auth/me", headers=ann)).status == 401
    fresh = await client.get(f"/api/v1/users/{ann_id}", headers=admin)
    assert fresh.headers["X-Cache"] == "MISS"
    record: dict[str, Any] = await fresh.json()
    return record


async def test_a_deactivation_whose_answer_was_lost_is_read_back_answered_announced_and_revoked(
    stack: StackFactory, redis_db: str, amqp_url: str, unique: str, proxy: FaultProxy
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=amqp_url, data_service_url=proxy.url)
    await wait_connected(client)
    admin = await admin_headers(client)
    ann_id, ann = await _ann(client, admin)
    applied = await _count(client, "applied")
    async with capture(amqp_url, f"test.{unique}", routing_key="user.updated") as received:
        proxy.mode = "lose-write-answers"
        resp = await client.patch(f"/api/v1/users/{ann_id}", json={"is_active": False}, headers=admin)
        # Read back, the record shows the change: the request succeeded after all.
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["is_active"] is False
        message = await next_message(received)
    assert body_of(message)["data"]["is_active"] is False
    proxy.mode = "pass"
    assert (await _signed_out_and_read_afresh(client, admin, ann_id, ann))["is_active"] is False
    assert await _count(client, "applied") == applied + 1


async def test_a_deactivation_whose_outcome_stays_unknown_still_ends_the_sessions_and_drops_the_cache(
    stack: StackFactory, redis_db: str, proxy: FaultProxy
) -> None:
    client = await stack(redis_url=redis_db, data_service_url=proxy.url)
    admin = await admin_headers(client)
    ann_id, ann = await _ann(client, admin)
    unknown = await _count(client, "unknown")
    proxy.mode = "lose-write-answers-and-reads"
    resp = await client.patch(f"/api/v1/users/{ann_id}", json={"is_active": False}, headers=admin)
    await assert_problem(resp, 502)  # nothing could say what became of it
    proxy.mode = "pass"
    # It was applied: as an admin who disabled an account must be able to count on, the
    # account's tokens no longer work, and nobody is served the old record from the cache.
    assert (await _signed_out_and_read_afresh(client, admin, ann_id, ann))["is_active"] is False
    assert await _count(client, "unknown") == unknown + 1


async def test_a_deletion_whose_answer_was_lost_is_found_done(
    stack: StackFactory, redis_db: str, proxy: FaultProxy
) -> None:
    client = await stack(redis_url=redis_db, data_service_url=proxy.url)
    admin = await admin_headers(client)
    ann_id, ann = await _ann(client, admin)
    proxy.mode = "lose-write-answers"
    assert (await client.delete(f"/api/v1/users/{ann_id}", headers=admin)).status == 204
    proxy.mode = "pass"
    assert (await client.get("/api/v1/auth/me", headers=ann)).status == 401
    assert (await client.get(f"/api/v1/users/{ann_id}", headers=admin)).status == 404


async def test_a_sign_up_whose_answer_was_lost_is_found_by_its_address_answered_and_announced(
    inbox: SmtpInbox, stack: StackFactory, proxy: FaultProxy, tmp_path: Path
) -> None:
    client = await stack(data_service_url=proxy.url)
    applied = await _count(client, "applied")
    proxy.mode = "lose-create-answers"
    resp = await client.post("/api/v1/auth/register", json={"email": "ann@example.com", "password": "correct-horse-1"})
    assert resp.status == 201, await resp.text()
    user = await resp.json()
    assert user["email"] == "ann@example.com"
    assert resp.headers["Location"] == f"/api/v1/users/{user['id']}"
    assert "password_hash" not in user
    proxy.mode = "pass"
    created = [e for e in events_written(tmp_path / "var") if e["type"] == "user.created"]
    assert [e["data"] for e in created if e["data"]["email"] == "ann@example.com"] == [user]
    assert await _count(client, "applied") == applied + 1
    token = await verification_token(inbox, "ann@example.com")  # mailed as for any sign-up
    assert (await client.post(VERIFY, json={"token": token})).status == 200


async def test_a_create_whose_answer_was_lost_for_an_address_already_taken_is_not_taken_for_it(
    stack: StackFactory, proxy: FaultProxy, tmp_path: Path
) -> None:
    client = await stack(data_service_url=proxy.url)
    admin = await admin_headers(client)
    await register(client, "ann@example.com", "correct-horse-1")
    unknown = await _count(client, "unknown")
    proxy.mode = "lose-create-answers"  # the data service refused it (409), and the answer was lost
    resp = await client.post("/api/v1/users", json={"email": "ann@example.com", "password": "another-horse-2"},
                             headers=admin)
    await assert_problem(resp, 502)  # Ann's record is found, but with another hash: not this create's
    proxy.mode = "pass"
    assert await _count(client, "unknown") == unknown + 1
    created = [e for e in events_written(tmp_path / "var") if e["type"] == "user.created"]
    assert [e["data"]["email"] for e in created].count("ann@example.com") == 1


async def test_a_change_answered_without_a_record_is_read_back_and_announced(
    stack: StackFactory, redis_db: str, amqp_url: str, unique: str, proxy: FaultProxy
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=amqp_url, data_service_url=proxy.url)
    await wait_connected(client)
    admin = await admin_headers(client)
    ann_id, ann = await _ann(client, admin)
    async with capture(amqp_url, f"test.{unique}", routing_key="user.updated") as received:
        proxy.mode = "empty-write-answers"  # 200 and no body, to the change and to the revocation
        resp = await client.patch(f"/api/v1/users/{ann_id}", json={"roles": ["user", "auditor"]}, headers=admin)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["roles"] == ["user", "auditor"]
        message = await next_message(received)
    assert body_of(message)["data"]["roles"] == ["user", "auditor"]  # the whole record, read back
    proxy.mode = "pass"
    # a role change ends sessions
    assert (await _signed_out_and_read_afresh(client, admin, ann_id, ann))["roles"] == ["user", "auditor"]


async def test_a_create_answered_with_an_unusable_record_publishes_no_empty_event(
    stack: StackFactory, proxy: FaultProxy, tmp_path: Path
) -> None:
    client = await stack(data_service_url=proxy.url)
    before = await metric(client, "turnstile_events_unannounced_total", event="user.created") or 0.0
    proxy.mode = "missing-field"  # the stored user comes back without created_at
    body = {"email": "nn@example.com", "password": "correct-horse-1"}
    resp = await client.post("/api/v1/auth/register", json=body)
    await assert_problem(resp, 502)
    created = [e for e in events_written(tmp_path / "var") if e["type"] == "user.created"]
    assert all(e["data"].get("id") for e in created), created  # never `"data": {}`
    assert await metric(client, "turnstile_events_unannounced_total", event="user.created") == before + 1


async def test_a_deactivation_still_waiting_for_its_answer_at_the_request_deadline_is_announced_and_revoked(
    stack: StackFactory, tmp_path: Path, proxy: FaultProxy
) -> None:
    # The request runs out of time while the data service holds the write; it then saves it. The
    # write is seen through: the user's tokens end and the change is announced, though the
    # client got a 504.
    client = await stack(data_service_url=proxy.url, request_timeout_s=1.0, body_timeout_s=0.5)
    admin = await admin_headers(client)
    ann_id, ann = await _ann(client, admin)
    assert (await client.get("/api/v1/auth/me", headers=ann)).status == 200
    proxy.mode = "slow"  # held 2 s, then forwarded: saved after the deadline, answered within the client's 5 s
    resp = await client.patch(f"/api/v1/users/{ann_id}", json={"is_active": False}, headers=admin)
    await assert_problem(resp, 504)
    proxy.mode = "pass"

    assert (await client.get("/api/v1/auth/me", headers=ann)).status == 401
    record = await _signed_out_and_read_afresh(client, admin, ann_id, ann)
    assert record["is_active"] is False
    [event] = [e for e in events_written(tmp_path / "var") if e["type"] == "user.updated"]
    assert event["data"]["id"] == ann_id
    assert event["data"]["is_active"] is False
