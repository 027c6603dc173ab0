"""Concurrent misses of one key on two instances (two apps, one Redis) make one data-service call
(contract §8 with §9a): the first to claim the key fetches, the other waits for its fill."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from pytest_aiohttp import AiohttpClient, AiohttpServer

from app.clients.redis import RedisConnection
from plugins.cache.markers import is_tombstone
from tests.integration.amqp_capture import eventually
from tests.plugins.cache.test_step import Client, cache_client
from tests.plugins.data_fetch.apps import FakeUpstream


async def two_instances(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, *,
    fake: FakeUpstream, redis_url: str,
) -> tuple[Client, Client]:
    first = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url)
    second = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url)
    return first, second


def entry(unique: str) -> str:
    return f"test:{unique}:thing:7"


def lease_of(unique: str) -> str:
    return f"{{{entry(unique)}}}:lease"


def fetching(fake: FakeUpstream) -> Callable[[], Awaitable[bool]]:
    async def called() -> bool:
        return fake.calls > 0

    return called


async def stored(redis_url: str, key: str) -> bytes | None:
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        value: str | None = await connection.client.get(key)
        return None if value is None else value.encode()
    finally:
        await connection.stop()


async def test_concurrent_misses_on_two_instances_make_one_call(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, redis_url: str,
) -> None:
    fake = FakeUpstream(body=b'{"id":7}', delay_s=0.2)
    first, second = await two_instances(
        aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url
    )

    responses = await asyncio.gather(*(client.get("/things/7") for client in (first, second) * 5))

    assert fake.calls == 1
    assert {r.status for r in responses} == {200}
    assert {await r.read() for r in responses} == {b'{"id":7}'}
    assert {r.headers["X-Cache"] for r in responses} == {"MISS"}
    statuses = sorted(r.headers["Cache-Status"] for r in responses)
    assert statuses == ["turnstile; fwd=uri-miss; fwd-status=200; stored"] + [
        "turnstile; fwd=uri-miss; fwd-status=200; stored; collapsed"
    ] * 9
    assert await stored(redis_url, entry(unique)) == b'{"id":7}'
    assert await stored(redis_url, lease_of(unique)) is None  # given up with the fill


async def test_a_lease_left_by_a_holder_that_died_delays_the_others_and_does_not_stop_them(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, redis_url: str,
) -> None:
    fake = FakeUpstream(body=b'{"id":7}')
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url)
    connection = RedisConnection(redis_url)
    await connection.start()
    try:  # what a holder leaves when its process dies mid-fetch: a lease that ends with its time
        await connection.client.set(lease_of(unique), "dead-holder:1|-", px=300)  # "-": the key held nothing
    finally:
        await connection.stop()

    resp = await client.get("/things/7")

    assert resp.status == 200
    assert await resp.read() == b'{"id":7}'
    assert resp.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    assert fake.calls == 1
    assert await stored(redis_url, entry(unique)) == b'{"id":7}'


async def test_a_failed_fetch_gives_the_lease_up_and_the_other_instance_tries_its_own(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, redis_url: str,
) -> None:
    fake = FakeUpstream(status=500, body=b'{"detail":"boom"}', delay_s=0.2)
    first, second = await two_instances(
        aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url
    )

    leader = asyncio.create_task(first.get("/things/7"))
    await eventually(fetching(fake), 5, "the first instance fetching")  # under the lease
    follower = await second.get("/things/7")
    led = await leader

    assert (led.status, follower.status) == (502, 502)
    assert fake.calls == 2  # one each: a failure is not shared across instances, it is retried
    assert await stored(redis_url, entry(unique)) is None
    assert await stored(redis_url, lease_of(unique)) is None  # given up: no lease left behind


async def test_a_write_during_a_lease_refuses_the_holders_fill_and_the_next_read_stores(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, redis_url: str,
) -> None:
    fake = FakeUpstream(body=b'{"id":7}', delay_s=0.3)
    first, second = await two_instances(
        aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url
    )

    holder = asyncio.create_task(first.get("/things/7"))
    await eventually(fetching(fake), 5, "the first instance fetching")
    fake.delay_s = 0.0
    assert (await second.patch("/things/7")).status == 200  # a tombstone the holder's fill must not replace
    raced = await holder

    assert raced.status == 200
    assert raced.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200"  # not stored
    assert is_tombstone(await stored(redis_url, entry(unique)))
    assert await stored(redis_url, lease_of(unique)) is None
    after = await second.get("/things/7")
    assert after.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
