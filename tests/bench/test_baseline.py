"""The benchmark's hand-written baseline does the work it claims, against the real Redis,
RabbitMQ and reference data service: a baseline that skipped a step would flatter nobody but
itself, and every Turnstile/baseline ratio would be wrong."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiormq
import attrs
import coredis
import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient

from app.clients.redis import RedisConnection
from app.dataservice import start_dataservice
from bench.baseline import CACHE_PREFIX, CACHE_TTL_S, ROUTING_KEY, Config, make_app
from bench.baseline_clients import broker_key
from bench.baseline_consumers import consumed_key
from bench.stack import seed_users
from tests.integration.amqp_capture import capture, next_message

BASELINE_REDIS_DB = 12
SECRET = "bench-baseline-tests-secret-of-at-least-32-bytes"
DATA_TOKEN = "bench-baseline-tests-data-service-token"
SEEDED = 3

Client = TestClient[web.Request, web.Application]


def token(sub: str, roles: list[str], **changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "exp": now + 600, "iat": now, "jti": uuid.uuid4().hex,
              "iss": "turnstile", "aud": "turnstile-api", "type": "access", **changes}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


ADMIN = bearer(token("99", ["admin", "user"]))


@pytest.fixture
async def redis_db(redis_url: str) -> str:
    """A Redis URL on a database of these tests, emptied."""
    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{BASELINE_REDIS_DB}"))
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:  # entered and left in this one fixture step
        await client.flushdb()
    return url


@pytest.fixture
async def redis(redis_db: str) -> AsyncIterator[coredis.Redis[str]]:
    # A coredis client must be entered and left in one task: RedisConnection owns one so.
    connection = RedisConnection(redis_db)
    await connection.start()
    try:
        yield connection.client
    finally:
        await connection.stop()


@pytest.fixture
async def data_url(tmp_path: Path) -> AsyncIterator[str]:
    db = tmp_path / "data.sqlite3"
    await asyncio.to_thread(seed_users, db, SEEDED)  # it runs an event loop of its own
    runner, url = await start_dataservice(db, token=DATA_TOKEN)
    yield url
    await runner.cleanup()


@pytest.fixture
def config(redis_db: str, data_url: str, amqp_url: str, unique: str) -> Config:
    return Config(redis_url=redis_db, data_url=data_url, data_token=DATA_TOKEN, amqp_url=amqp_url,
                  exchange=f"test.{unique}", secret=SECRET)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config) -> AsyncIterator[Client]:
    connection = await aiormq.connect(config.amqp_url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare(config.exchange, exchange_type="topic", durable=True)
        yield await aiohttp_client(make_app(config))
        await channel.exchange_delete(config.exchange)
    finally:
        await connection.close()


async def test_uncached_read_fetches_the_public_user_with_the_data_token_and_caches_it(
    client: Client, redis: coredis.Redis[str], data_url: str
) -> None:
    resp = await client.get("/api/v1/users/2", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    user = await resp.json()
    assert user["id"] == 2
    assert user["email"] == "seed-2@bench.example.com"
    assert "password_hash" not in user
    assert orjson.loads(await redis.get(f"{CACHE_PREFIX}2") or "null") == user
    assert 0 < await redis.ttl(f"{CACHE_PREFIX}2") <= CACHE_TTL_S


async def test_cached_read_answers_from_redis_without_the_data_service(
    client: Client, redis: coredis.Redis[str]
) -> None:
    await redis.set(f"{CACHE_PREFIX}3", '{"id": 3, "full_name": "from the cache"}')
    resp = await client.get("/api/v1/users/3", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["full_name"] == "from the cache"


async def test_patch_changes_the_user_drops_the_key_and_publishes_a_confirmed_persistent_event(
    client: Client, redis: coredis.Redis[str], config: Config
) -> None:
    await client.get("/api/v1/users/1", headers=ADMIN)
    assert await redis.exists([f"{CACHE_PREFIX}1"]) == 1
    async with capture(config.amqp_url, config.exchange) as received:
        resp = await client.patch("/api/v1/users/1", json={"full_name": "Patched"}, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        message = await next_message(received)
    user = await resp.json()
    assert user["full_name"] == "Patched"
    assert "password_hash" not in user
    assert await redis.exists([f"{CACHE_PREFIX}1"]) == 0
    assert message.routing_key == ROUTING_KEY
    assert message.header.properties.delivery_mode == 2
    event = orjson.loads(message.body)
    assert event["type"] == "user.updated"
    assert event["data"] == user
    assert event["id"] == message.header.properties.message_id
    assert (await (await client.get("/api/v1/users/1", headers=ADMIN)).json())["full_name"] == "Patched"


async def test_the_consuming_baseline_consumes_each_of_its_events_from_both_queues(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    # The PATCH reference that does Turnstile's broker work: its own events come back to it
    # once through a shared quorum queue and once through a queue of its own, each acked.
    shared = f"{config.exchange}.baseline-changes"
    consuming = attrs.evolve(config, routing_key="consuming.user.updated", consume_events=shared)
    connection = await aiormq.connect(config.amqp_url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare(config.exchange, exchange_type="topic", durable=True)
        client = await aiohttp_client(make_app(consuming))
        for name in ("Once", "Twice"):
            resp = await client.patch("/api/v1/users/1", json={"full_name": name}, headers=ADMIN)
            assert resp.status == 200, await resp.text()
        consumed = client.app[consumed_key]
        for _ in range(100):
            if consumed == {"shared": 2, "own": 2}:
                break
            await asyncio.sleep(0.05)
        assert consumed == {"shared": 2, "own": 2}
        declared = await channel.queue_declare(shared, passive=True)
        assert (declared.message_count, declared.consumer_count) == (0, 1)  # acked, not just taken
        await client.close()
        with pytest.raises(aiormq.ChannelNotFoundEntity):  # deleted with the consumers
            await (await connection.channel()).queue_declare(shared, passive=True)
        await channel.exchange_delete(config.exchange)
    finally:
        await connection.close()


async def test_patch_takes_only_what_the_benchmark_sends(client: Client) -> None:
    resp = await client.patch("/api/v1/users/1", json={"roles": ["admin"]}, headers=ADMIN)
    assert resp.status == 422
    resp = await client.patch("/api/v1/users/1", data=b"{", headers=ADMIN)
    assert resp.status == 400


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    (bearer(token("1", ["user"], type="refresh")), 401),
    (bearer(token("1", ["user"], aud="someone-else")), 401),
    (bearer(token("1", ["user"]) + "x"), 401),
    (bearer(token("2", ["user"])), 403),
])
async def test_the_token_is_verified_on_every_route_that_has_one(
    client: Client, headers: dict[str, str], status: int
) -> None:
    assert (await client.get("/api/v1/users/1", headers=headers)).status == status
    assert (await client.patch("/api/v1/users/1", json={"full_name": "x"}, headers=headers)).status == status


async def test_self_may_read_and_change_its_own_user(client: Client, config: Config) -> None:
    own = bearer(token("1", ["user"]))
    assert (await client.get("/api/v1/users/1", headers=own)).status == 200
    async with capture(config.amqp_url, config.exchange):
        assert (await client.patch("/api/v1/users/1", json={"full_name": "Me"}, headers=own)).status == 200


async def test_a_broken_channel_is_opened_again_for_the_next_publish(client: Client, config: Config) -> None:
    channel = await client.app[broker_key].open()
    await channel.close()
    async with capture(config.amqp_url, config.exchange) as received:
        resp = await client.patch("/api/v1/users/1", json={"full_name": "Again"}, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        assert orjson.loads((await next_message(received)).body)["data"]["full_name"] == "Again"


async def test_an_event_no_queue_would_get_is_a_503_not_a_silent_loss(client: Client) -> None:
    # Published with mandatory: the benchmark's events queue is bound to "#", so it never sees this.
    resp = await client.patch("/api/v1/users/1", json={"full_name": "Lost"}, headers=ADMIN)
    assert resp.status == 503


async def test_references_answer_the_cached_bytes_without_auth(
    client: Client, redis: coredis.Redis[str]
) -> None:
    for path in ("/reference/redis/users/2", "/reference/dict/users/2"):
        assert (await client.get(path)).status == 404  # nothing cached yet
    cached = await (await client.get("/api/v1/users/2", headers=ADMIN)).read()
    for path in ("/reference/redis/users/2", "/reference/dict/users/2"):
        resp = await client.get(path)
        assert resp.status == 200
        assert await resp.read() == cached
    # The ceiling keeps its copy in the process: gone from Redis, still answered from the dict.
    await redis.delete([f"{CACHE_PREFIX}2"])
    assert await (await client.get("/reference/dict/users/2")).read() == cached
    assert (await client.get("/reference/redis/users/2")).status == 404


async def test_an_unknown_user_is_a_404_and_a_refused_data_service_a_502(
    aiohttp_client: AiohttpClient, config: Config, client: Client
) -> None:
    assert (await client.get(f"/api/v1/users/{SEEDED + 1}", headers=ADMIN)).status == 404
    other = await aiohttp_client(make_app(attrs.evolve(config, data_token="not-the-token")))
    assert (await other.get(f"/api/v1/users/{SEEDED}", headers=ADMIN)).status == 502
