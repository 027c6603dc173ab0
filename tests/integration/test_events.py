"""Domain events of the default pipelines on the real RabbitMQ (contract §9): the contract's
body and properties, the durable outbox through a broker outage, and across a shutdown."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiormq.abc import DeliveredMessage

from app import hookimpl
from app.clients.outbox import DEFAULT_REDIS_KEY
from tests.integration.amqp_capture import (
    DurableCapture,
    body_of,
    capture,
    eventually,
    metric,
    next_message,
    remove_test_topology,
    wait_connected,
    wait_disconnected,
)
from tests.integration.conftest import (
    ADMIN_EMAIL,
    Client,
    StackFactory,
    admin_headers,
    assert_problem,
    bearer,
    login,
    redis_db_url,
    register,
)
from tests.integration.faults import FaultProxy
from tests.services import flush_redis, redis_client, start_service, stop_service
from tests.snapshot_redis import SnapshotRedis

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
PUBLIC_USER_KEYS = {"id", "email", "full_name", "is_active", "is_verified", "roles", "created_at", "updated_at"}
OUTBOX_REDIS_DB = 13
ANSWER_WITHIN_S = 2.0  # the confirm deadline (0.5 s) and the reply slack, with room for a busy machine


@pytest.fixture
async def broker(amqp_url: str, unique: str) -> AsyncIterator[str]:
    """The broker URL; request it before `stack` so its cleanup runs after the service stopped."""
    yield amqp_url
    await remove_test_topology(amqp_url, unique)


@pytest.fixture
async def outbox_redis_db(redis_url: str) -> str:
    """An emptied Redis database of this module's own: the outbox must outlive the app for the
    whole outage, and other modules' tests (run at the same time while developing) empty
    INTEGRATION_REDIS_DB whenever they start."""
    url = redis_db_url(redis_url, OUTBOX_REDIS_DB)
    await flush_redis(url)
    return url


async def take_users_events(captured: DurableCapture, count: int, within_s: float) -> list[DeliveredMessage]:
    """The next `count` messages but the start-up admin's `user.created` (it announces its
    creation as every write does), which comes first whenever the capture was there before
    the service started."""
    messages = await captured.take(count + 1, within_s=within_s)
    ours = [message for message in messages if body_of(message)["data"].get("email") != ADMIN_EMAIL]
    assert len(ours) == count, [body_of(message)["data"] for message in messages]
    return ours


def assert_contract_event(
    message: DeliveredMessage, event_type: str, request_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    body = body_of(message)
    assert set(body) == {"id", "type", "occurred_at", "request_id", "data"}
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert body["type"] == event_type
    assert message.routing_key == event_type
    assert RFC3339.match(body["occurred_at"]), body["occurred_at"]
    assert body["request_id"] == request_id
    assert body["data"] == data
    assert "password_hash" not in message.body.decode()
    props = message.header.properties
    assert props.message_id == body["id"]
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.app_id == "turnstile"
    assert props.headers is not None
    assert props.headers["x-request-id"] == request_id
    assert isinstance(props.timestamp, datetime)
    occurred = datetime.fromisoformat(body["occurred_at"])
    assert abs(props.timestamp.replace(tzinfo=occurred.tzinfo) - occurred) < timedelta(seconds=1)
    return body


def rid(name: str) -> dict[str, str]:
    return {"X-Request-ID": f"{name}-{uuid.uuid4().hex[:8]}"}


async def create_user(client: Client, admin: dict[str, str], email: str, request_id: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    response = await client.post(
        "/api/v1/users", json={"email": email, "password": "correct-horse-1"}, headers={**admin, **request_id}
    )
    assert response.status == 201, await response.text()
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert response.headers["X-Request-ID"] == request_id["X-Request-ID"]
    user: dict[str, Any] = await response.json()
    return user


async def test_user_writes_publish_contract_events(
    broker: str, stack: StackFactory, redis_db: str, unique: str
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=broker)
    await wait_connected(client)
    admin = await admin_headers(client)
    async with capture(broker, f"test.{unique}", routing_key="user.*") as received:
        registered_rid = rid("register")
        registered = await client.post(
            "/api/v1/auth/register",
            json={"email": "reg@example.com", "password": "correct-horse-1"},
            headers=registered_rid,
        )
        assert registered.status == 201
        created_rid, updated_rid, deleted_rid = rid("create"), rid("update"), rid("delete")
        created = await create_user(client, admin, "ann@example.com", created_rid)
        patched = await client.patch(
            f"/api/v1/users/{created['id']}", json={"full_name": "Ann B"}, headers={**admin, **updated_rid}
        )
        assert patched.status == 200
        removed = await client.delete(f"/api/v1/users/{created['id']}", headers={**admin, **deleted_rid})
        assert removed.status == 204

        messages = [await next_message(received) for _ in range(4)]

    user = await registered.json()
    assert set(user) == PUBLIC_USER_KEYS
    assert_contract_event(messages[0], "user.created", registered_rid["X-Request-ID"], user)
    assert_contract_event(messages[1], "user.created", created_rid["X-Request-ID"], created)
    assert_contract_event(messages[2], "user.updated", updated_rid["X-Request-ID"], await patched.json())
    assert (await patched.json())["full_name"] == "Ann B"
    deleted = assert_contract_event(messages[3], "user.deleted", deleted_rid["X-Request-ID"], {"id": created["id"]})
    assert len({body_of(m)["id"] for m in messages}) == 4
    assert deleted["data"]["id"] == created["id"]
    assert received.empty()


class SlowAnswers:
    """A team's `transform_response` that takes half a second, after the data service saved."""

    @hookimpl
    async def transform_response(self, request: Any, pipeline: Any, data: Any) -> None:
        if pipeline.name == "update_user":
            await asyncio.sleep(0.5)


async def test_an_event_is_stamped_when_its_change_was_saved_not_when_the_request_ended(
    broker: str, stack: StackFactory, redis_db: str, unique: str
) -> None:
    # Stamped once the whole chain had run, an update saved before a delete could carry the later
    # time, and a consumer ordering by it would bring the deleted user back (the race review).
    client = await stack(redis_url=redis_db, rabbitmq_url=broker, plugins=(SlowAnswers(),))
    await wait_connected(client)
    admin = await admin_headers(client)
    user = await register(client, "ann@example.com")
    async with capture(broker, f"test.{unique}", routing_key="user.updated") as received:
        sent = datetime.now(UTC)
        patched = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Ann B"}, headers=admin)
        answered = datetime.now(UTC)
        assert patched.status == 200
        event = body_of(await next_message(received))
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    assert answered - sent >= timedelta(seconds=0.5)
    assert sent <= occurred <= answered - timedelta(seconds=0.4)


async def test_a_failed_write_publishes_nothing(broker: str, stack: StackFactory, redis_db: str, unique: str) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=broker)
    await wait_connected(client)
    admin = await admin_headers(client)
    user = await register(client, "ann@example.com")
    async with capture(broker, f"test.{unique}") as received:
        taken = await client.post("/api/v1/users", json={"email": user["email"], "password": "x" * 8}, headers=admin)
        invalid = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": 5}, headers=admin)
        missing = await client.delete("/api/v1/users/999999", headers=admin)
        sentinel = await client.post("/api/v1/auth/register", json={"email": "z@example.com", "password": "x" * 8})

        first = await next_message(received)

    assert (taken.status, invalid.status, missing.status, sentinel.status) == (409, 422, 404, 201)
    assert body_of(first)["data"]["email"] == "z@example.com"  # nothing came before it


async def test_a_patch_that_names_no_field_announces_nothing(
    broker: str, stack: StackFactory, redis_db: str, unique: str
) -> None:
    # It changes nothing (the data service keeps updated_at): an event would be a phantom change.
    client = await stack(redis_url=redis_db, rabbitmq_url=broker)
    await wait_connected(client)
    admin = await admin_headers(client)
    user = await register(client, "ann@example.com")
    async with capture(broker, f"test.{unique}", routing_key="user.*") as received:
        empty = await client.patch(f"/api/v1/users/{user['id']}", json={}, headers=admin)
        named = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": None}, headers=admin)
        first = await next_message(received)

    assert (empty.status, named.status) == (200, 200)
    assert (await empty.json())["updated_at"] == user["updated_at"]
    assert body_of(first)["request_id"] == named.headers["X-Request-ID"]  # nothing came before it
    assert received.empty()


@pytest.mark.timeout(120)
async def test_events_wait_in_the_outbox_while_rabbitmq_is_down_and_arrive_in_order(
    broker: str, stack: StackFactory, unique: str
) -> None:
    captured = DurableCapture(broker, f"test.{unique}", f"test.{unique}.capture", routing_key="user.created")
    await captured.declare()  # durable: still bound when the outbox drains after the restart
    client = await stack(rabbitmq_url=broker)  # no Redis: the file outbox (the Redis one: the next test)
    await wait_connected(client)
    admin = await admin_headers(client)

    await stop_service("rabbitmq")
    try:
        await wait_disconnected(client)
        request_ids = [rid(f"outage{i}") for i in range(3)]
        users = [await create_user(client, admin, f"u{i}@example.com", r) for i, r in enumerate(request_ids)]
        ready = await client.get("/readyz")
        assert ready.status == 200  # events wait in the outbox; the service still takes traffic
        assert (await ready.json())["checks"]["rabbitmq"] in {"connecting", "disconnected"}
        depth = await metric(client, "turnstile_outbox_depth")
        assert depth is not None
        assert depth >= 3
    finally:
        await start_service("rabbitmq")

    async def drained() -> bool:
        return await metric(client, "turnstile_outbox_depth") == 0

    await eventually(drained, 60, "the outbox drained after RabbitMQ returned")
    await wait_connected(client, within_s=10)
    messages = await take_users_events(captured, 3, within_s=10)
    for message, user, request_id in zip(messages, users, request_ids, strict=True):
        assert_contract_event(message, "user.created", request_id["X-Request-ID"], user)
    assert await captured.depth() == 0


@pytest.mark.timeout(120)
async def test_events_left_at_shutdown_are_delivered_by_the_next_start(
    broker: str, stack: StackFactory, outbox_redis_db: str, unique: str
) -> None:
    redis_db = outbox_redis_db
    captured = DurableCapture(broker, f"test.{unique}", f"test.{unique}.capture", routing_key="user.created")
    await captured.declare()
    first = await stack(redis_url=redis_db, rabbitmq_url=broker)
    await wait_connected(first)
    admin = await admin_headers(first)

    await stop_service("rabbitmq")
    try:
        await wait_disconnected(first)
        request_id = rid("before-shutdown")
        user = await create_user(first, admin, "ann@example.com", request_id)
        await first.close()
        async with redis_client(redis_db) as outbox:
            assert await outbox.llen(DEFAULT_REDIS_KEY) == 1
    finally:
        await start_service("rabbitmq")

    second = await stack(redis_url=redis_db, rabbitmq_url=broker)
    (message,) = await take_users_events(captured, 1, within_s=60)
    assert_contract_event(message, "user.created", request_id["X-Request-ID"], user)

    async def drained() -> bool:
        return await metric(second, "turnstile_outbox_depth") == 0

    await eventually(drained, 10, "the outbox emptied")
    assert await captured.depth() == 0
    me = await second.get("/api/v1/auth/me", headers=bearer(await login(second, "ann@example.com", "correct-horse-1")))
    assert (await me.json())["id"] == user["id"]


@pytest.mark.timeout(120)
async def test_events_in_the_outbox_of_a_redis_restarted_empty_are_still_delivered(
    broker: str, stack: StackFactory, snapshot_redis: SnapshotRedis, unique: str
) -> None:
    # Redis without persistence restarted while the broker was down: the outbox's list is gone
    # with it. The instance that outboxed the event puts it back (app/clients/outbox_journal.py).
    captured = DurableCapture(broker, f"test.{unique}", f"test.{unique}.capture", routing_key="user.created")
    await captured.declare()
    client = await stack(redis_url=snapshot_redis.url, rabbitmq_url=broker)
    await wait_connected(client)
    admin = await admin_headers(client)

    restored = await metric(client, "turnstile_outbox_events_restored_total") or 0.0
    await stop_service("rabbitmq")
    try:
        await wait_disconnected(client)
        request_id = rid("outboxed")
        user = await create_user(client, admin, "ann@example.com", request_id)
        async with redis_client(snapshot_redis.url) as redis:
            assert await redis.llen(DEFAULT_REDIS_KEY) == 1
        await snapshot_redis.roll_back()  # never saved: back empty

        async def put_back() -> bool:
            async with redis_client(snapshot_redis.url) as redis:
                return await redis.llen(DEFAULT_REDIS_KEY) == 1

        await eventually(put_back, 30, "the event put back in the outbox")
    finally:
        await start_service("rabbitmq")

    (message,) = await take_users_events(captured, 1, within_s=60)
    assert_contract_event(message, "user.created", request_id["X-Request-ID"], user)
    assert await metric(client, "turnstile_outbox_events_restored_total") == restored + 1


# --- every committed change has its event (contract §9) --------------------------------------
async def test_a_deactivation_while_redis_is_down_is_saved_revoked_and_published(
    broker: str, stack: StackFactory, redis_db: str, unique: str
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=broker)
    await wait_connected(client)
    admin = await admin_headers(client)
    user = await create_user(client, admin, "ann@example.com", rid("create"))
    ann = bearer(await login(client, "ann@example.com", "correct-horse-1"))
    async with capture(broker, f"test.{unique}", routing_key="user.updated") as received:
        await stop_service("redis")
        try:
            request_id = rid("deactivate")
            resp = await client.patch(
                f"/api/v1/users/{user['id']}", json={"is_active": False}, headers={**admin, **request_id}
            )
            # The revocation is recorded in the data service; Redis gets it when it is back.
            assert resp.status == 200, await resp.text()
            message = await next_message(received)
            assert (await client.get("/api/v1/auth/me", headers=ann)).status == 401
        finally:
            await start_service("redis")
    body = assert_contract_event(message, "user.updated", request_id["X-Request-ID"], await resp.json())
    assert body["data"]["is_active"] is False


async def test_a_change_saved_though_its_revocation_failed_is_published_and_uncached(
    broker: str, stack: StackFactory, redis_db: str, unique: str, dataservice: str
) -> None:
    proxy = FaultProxy(dataservice)
    await proxy.start()
    try:
        client = await stack(redis_url=redis_db, rabbitmq_url=broker, data_service_url=proxy.url)
        await wait_connected(client)
        admin = await admin_headers(client)
        user = await create_user(client, admin, "ann@example.com", rid("create"))
        assert (await client.get(f"/api/v1/users/{user['id']}", headers=admin)).headers["X-Cache"] == "MISS"
        assert (await client.get(f"/api/v1/users/{user['id']}", headers=admin)).headers["X-Cache"] == "HIT"
        async with capture(broker, f"test.{unique}", routing_key="user.updated") as received:
            proxy.mode = "refuse-revocations"
            request_id = rid("roles")
            resp = await client.patch(
                f"/api/v1/users/{user['id']}", json={"roles": ["user", "auditor"]}, headers={**admin, **request_id}
            )
            await assert_problem(resp, 503)  # saved, but the revocation could not be recorded
            message = await next_message(received)
        proxy.mode = "pass"
        body = assert_contract_event(message, "user.updated", request_id["X-Request-ID"], body_of(message)["data"])
        assert body["data"]["roles"] == ["user", "auditor"]
        fresh = await client.get(f"/api/v1/users/{user['id']}", headers=admin)
        assert fresh.headers["X-Cache"] == "MISS"  # invalidated though the request failed
        assert (await fresh.json())["roles"] == ["user", "auditor"]
    finally:
        await proxy.close()
