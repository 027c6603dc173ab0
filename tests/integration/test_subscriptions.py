"""The default `user_changes` subscription on the real RabbitMQ (contract §9, reactive side):
another producer's events invalidate the cache and revoke tokens; poison messages end in the
dead-letter queue; and /metrics reports the cache, the events and the consumers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.clients.amqp.retries import RETRIES_HEADER
from app.clients.redis import RedisConnection
from app.models.events import utc_now_rfc3339
from plugins.cache.markers import TOMBSTONE_PREFIX
from tests.fixtures.commit_plugin import CommitPlugin
from tests.integration.amqp_capture import (
    capture,
    eventually,
    fresh_redis_db,
    has_consumer,
    metric,
    next_message,
    publish,
    remove_test_topology,
    take_from,
    wait_connected,
)
from tests.integration.conftest import (
    Client,
    StackFactory,
    admin_headers,
    bearer,
    login,
    pipelines_for,
    register,
)

PASSWORD = "correct-horse-1"
MAX_RETRIES = 3  # pipelines.toml: user_changes.max_retries
SUBSCRIPTIONS = ("user_changes", "user_changes_each_instance")  # pipelines.toml: both invalidate user:{id}


@pytest.fixture
async def broker(amqp_url: str, unique: str) -> AsyncIterator[str]:
    """The broker URL; request it before `stack` so its cleanup runs after the service stopped."""
    yield amqp_url
    await remove_test_topology(amqp_url, unique)


async def subscribed_stack(
    stack: StackFactory, broker: str, unique: str, redis_url: str | None, **overrides: Any
) -> Client:
    """The service with its publisher connected and its subscription consuming."""
    client = await stack(redis_url=redis_url, rabbitmq_url=broker, **overrides)
    await wait_connected(client)
    queue = subscription_queue(unique)

    async def consuming() -> bool:
        return await has_consumer(broker, queue)

    await eventually(consuming, 30, f"a consumer on {queue}")
    return client


def subscription_queue(unique: str) -> str:
    return f"test.{unique}.user-changes"


def foreign_event(event_type: str, data: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """An event as another producer would publish it: the contract's body and properties."""
    event_id = str(uuid.uuid4())
    request_id = f"elsewhere-{event_id[:8]}"
    body = {
        "id": event_id,
        "type": event_type,
        "occurred_at": utc_now_rfc3339(),  # a revocation takes effect as of this moment
        "request_id": request_id,
        "data": data,
    }
    properties = {
        "message_id": event_id,
        "content_type": "application/json",
        "app_id": "another-service",
        "headers": {"x-request-id": request_id},
    }
    return orjson.dumps(body), properties


async def publish_foreign(broker: str, unique: str, event_type: str, data: dict[str, Any]) -> str:
    body, properties = foreign_event(event_type, data)
    await publish(broker, f"test.{unique}", event_type, body, **properties)
    message_id: str = properties["message_id"]
    return message_id


async def x_cache(client: Client, user_id: int, headers: dict[str, str]) -> str:
    response = await client.get(f"/api/v1/users/{user_id}", headers=headers)
    assert response.status == 200, await response.text()
    return response.headers["X-Cache"]


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_update_from_another_producer_invalidates_the_cache(
    broker: str, stack: StackFactory, unique: str, cache: str, request: pytest.FixtureRequest
) -> None:
    redis_url = await fresh_redis_db(request) if cache == "redis" else None
    client = await subscribed_stack(stack, broker, unique, redis_url)
    user = await register(client, "ann@example.com", PASSWORD)
    headers = bearer(await login(client, "ann@example.com", PASSWORD))
    assert await x_cache(client, user["id"], headers) == "MISS"
    assert await x_cache(client, user["id"], headers) == "HIT"

    await publish_foreign(broker, unique, "user.updated", {**user, "full_name": "Changed elsewhere"})

    misses: list[str] = []

    async def invalidated() -> bool:
        response = await client.get(f"/api/v1/users/{user['id']}", headers=headers)
        assert response.status == 200, await response.text()
        if response.headers["X-Cache"] != "MISS":
            return False
        misses.append(response.headers["Cache-Status"])
        return True

    await eventually(invalidated, 10, "the cached user invalidated by the foreign user.updated")
    assert misses[-1].endswith("; stored")  # found the tombstone; its answer replaced it
    assert await x_cache(client, user["id"], headers) == "HIT"
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.status == 200  # an update that keeps the user active leaves the tokens alone


async def cached_value(redis_url: str, user_id: int) -> bytes | None:
    """What Redis holds for the user's cache key (standalone or cluster, as the suite runs)."""
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        value: bytes | None = await connection.get(f"user:{user_id}", decode=False)
        return value
    finally:
        await connection.stop()


async def redis_has(redis_url: str, key: str) -> bool:
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        return bool(await connection.client.exists([key]))
    finally:
        await connection.stop()


async def test_an_own_write_is_tombstoned_once_and_a_foreign_one_by_both_subscriptions(
    broker: str, stack: StackFactory, unique: str, redis_db: str
) -> None:
    client = await subscribed_stack(stack, broker, unique, redis_db)

    # The metrics are the process's: count from what earlier tests left.
    async def counts(result: str) -> list[float]:
        return [
            await metric(client, "turnstile_cache_invalidations_total", pipeline=name, result=result) or 0
            for name in SUBSCRIPTIONS
        ]

    before = {result: await counts(result) for result in ("ok", "skipped")}

    user = await register(client, "ann@example.com", PASSWORD)
    changed = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Ann"},
                                 headers=await admin_headers(client))
    assert changed.status == 200, await changed.text()
    tombstone = await cached_value(redis_db, user["id"])
    assert tombstone is not None
    assert tombstone.startswith(TOMBSTONE_PREFIX)

    async def added(result: str, expected: list[float]) -> bool:
        return [now - then for now, then in zip(await counts(result), before[result], strict=True)] == expected

    async def skipped_by_both() -> bool:
        return await added("skipped", [1, 1])

    # Both heard this instance's own event, and both left the tombstone written after the write.
    await eventually(skipped_by_both, 10, "the own user.updated skipped by both subscriptions")
    assert await added("ok", [0, 0])
    assert await cached_value(redis_db, user["id"]) == tombstone

    await publish_foreign(broker, unique, "user.updated", {**user, "full_name": "Changed elsewhere"})

    async def tombstoned_by_both() -> bool:
        return await added("ok", [1, 1])

    await eventually(tombstoned_by_both, 10, "the foreign user.updated tombstoned by both subscriptions")
    assert await added("skipped", [1, 1])
    fresh = await cached_value(redis_db, user["id"])
    assert fresh is not None
    assert fresh.startswith(TOMBSTONE_PREFIX)
    assert fresh != tombstone


async def test_delete_from_another_producer_revokes_the_users_tokens(
    broker: str, stack: StackFactory, unique: str, redis_db: str
) -> None:
    client = await subscribed_stack(stack, broker, unique, redis_db)
    user = await register(client, "ann@example.com", PASSWORD)
    bystander = await register(client, "bob@example.com", PASSWORD)
    headers = bearer(await login(client, "ann@example.com", PASSWORD))
    bystander_headers = bearer(await login(client, "bob@example.com", PASSWORD))
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200

    await publish_foreign(broker, unique, "user.deleted", {"id": user["id"]})

    async def revoked() -> bool:
        return (await client.get("/api/v1/auth/me", headers=headers)).status == 401

    await eventually(revoked, 10, "the deleted user's access token refused")
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=headers)).status == 401
    assert (await client.get("/api/v1/auth/me", headers=bystander_headers)).status == 200
    assert bystander["id"] != user["id"]
    # What was kept of the deleted user's sessions (when each began and was last used) is gone.
    assert not await redis_has(redis_db, f"turnstile:auth:sessions:{user['id']}")
    assert await redis_has(redis_db, f"turnstile:auth:sessions:{bystander['id']}")


async def test_poison_messages_end_in_the_dead_letter_queue(
    broker: str, stack: StackFactory, unique: str, redis_db: str
) -> None:
    client = await subscribed_stack(stack, broker, unique, redis_db)
    queue = subscription_queue(unique)
    not_json_id = f"not-json-{uuid.uuid4().hex[:8]}"
    await publish(broker, f"test.{unique}", "user.updated", b"{not json", message_id=not_json_id)
    failing_id = await publish_foreign(broker, unique, "user.updated", {"email": "no-id@example.com"})

    dead = {m.header.properties.message_id: m for m in await take_from(broker, f"{queue}.dead", 2, within_s=20)}
    dead_here = {
        m.header.properties.message_id: m for m in await take_from(broker, f"{queue}.instance.dead", 2, within_s=20)
    }

    assert set(dead) == set(dead_here) == {not_json_id, failing_id}
    assert dead[not_json_id].body == b"{not json"
    assert orjson.loads(dead[failing_id].body)["data"] == {"email": "no-id@example.com"}
    # The shared quorum queue counted the deliveries itself; a message that is not an event is
    # refused at once. The instance's own (classic) queue counted the retries in copies.
    assert _deaths(dead[not_json_id]) == [(queue, "rejected")]
    assert _deaths(dead[failing_id]) == [(queue, "delivery_limit")]
    assert RETRIES_HEADER not in (dead_here[not_json_id].header.properties.headers or {})
    assert (dead_here[failing_id].header.properties.headers or {})[RETRIES_HEADER] == MAX_RETRIES
    for name in (queue, f"{queue}.instance"):
        assert await metric(client, "turnstile_events_consumed_total", subscription=name, outcome="dead_lettered") == 2
        assert await metric(
            client, "turnstile_events_consumed_total", subscription=name, outcome="retried"
        ) == MAX_RETRIES

    # The subscription goes on with the next good message.
    await publish_foreign(broker, unique, "user.updated", {"id": 1})

    async def acked() -> bool:
        return await metric(client, "turnstile_events_consumed_total", subscription=queue, outcome="acked") == 1

    await eventually(acked, 10, "a good message acked after the poison ones")


async def test_a_message_whose_steps_never_return_is_dead_lettered_and_frees_its_slot(
    broker: str, stack: StackFactory, unique: str, redis_db: str, tmp_path: Path
) -> None:
    # One try of a message's steps has the request deadline; one that never returns is a
    # dependency not answering: the message waits (max_wait_s), then is dead-lettered.
    text = pipelines_for(tmp_path, unique).read_text()
    shared = '  { use = "cache-invalidate", keys = ["user:{id}"] },\n  { use = "revoke-tokens", user = "{id}" },\n]'
    assert text.count(shared) == 2
    text = text.replace("prefetch = 16", "prefetch = 1").replace("max_wait_s = 600 ", "max_wait_s = 1 ", 1)
    text = text.replace(shared, '  { use = "hang-on" },\n' + shared, 1)
    path = tmp_path / "hanging.toml"  # not pipelines_for's file: the stack writes that one afresh
    path.write_text(text)
    client = await subscribed_stack(stack, broker, unique, redis_db, pipelines_file=path,
                                    plugins=(CommitPlugin(),), request_timeout_s=0.3)
    queue = subscription_queue(unique)

    stuck_id = await publish_foreign(broker, unique, "user.updated", {"id": 1, "hang": True})
    [dead] = await take_from(broker, f"{queue}.dead", 1, within_s=20)

    assert dead.header.properties.message_id == stuck_id
    assert await metric(client, "turnstile_events_consumed_total", subscription=queue, outcome="dead_lettered") == 1
    # Its one prefetch slot is free again: the next message is handled.
    await publish_foreign(broker, unique, "user.updated", {"id": 1})

    async def acked() -> bool:
        return await metric(client, "turnstile_events_consumed_total", subscription=queue, outcome="acked") == 1

    await eventually(acked, 10, "the next message acked")


def _deaths(message: Any) -> list[tuple[str, str]]:
    deaths: Any = (message.header.properties.headers or {})["x-death"]
    return [(d["queue"], d["reason"]) for d in deaths]


async def test_metrics_report_cache_events_outbox_and_consumers(
    broker: str, stack: StackFactory, unique: str, redis_db: str
) -> None:
    client = await subscribed_stack(stack, broker, unique, redis_db)
    queue = subscription_queue(unique)

    async def cache_count(result: str) -> float:
        return await metric(client, "turnstile_cache_requests_total", pipeline="get_user", result=result) or 0.0

    before = {result: await cache_count(result) for result in ("hit", "miss", "bypass")}
    confirmed_before = await metric(client, "turnstile_events_published_total", outcome="confirmed") or 0.0
    admin = await admin_headers(client)
    async with capture(broker, f"test.{unique}", routing_key="user.created") as received:  # routable: confirmed
        user = await register(client, "ann@example.com", PASSWORD)
        created = await client.post(
            "/api/v1/users", json={"email": "bob@example.com", "password": PASSWORD}, headers=admin
        )
        assert created.status == 201
        await next_message(received)
        await next_message(received)
    headers = bearer(await login(client, "ann@example.com", PASSWORD))
    assert await x_cache(client, user["id"], headers) == "MISS"
    assert await x_cache(client, user["id"], headers) == "HIT"
    await publish_foreign(broker, unique, "user.updated", {"id": user["id"]})

    async def consumed() -> bool:
        return await metric(client, "turnstile_events_consumed_total", subscription=queue, outcome="acked") == 1

    await eventually(consumed, 10, "the foreign event acked")

    assert await cache_count("hit") >= before["hit"] + 1
    assert await cache_count("miss") >= before["miss"] + 1
    assert await metric(client, "turnstile_cache_requests_total", pipeline="get_user", result="bypass") is not None
    confirmed = await metric(client, "turnstile_events_published_total", outcome="confirmed")
    assert confirmed is not None
    assert confirmed >= confirmed_before + 2  # register and create
    assert await metric(client, "turnstile_outbox_depth") == 0
    assert await metric(client, "turnstile_publisher_connected") == 1
    for outcome in ("retried", "dead_lettered"):
        assert not await metric(client, "turnstile_events_consumed_total", subscription=queue, outcome=outcome)
    assert (await metric(client, "turnstile_cache_invalidations_total", pipeline="user_changes", result="ok") or 0) >= 1
