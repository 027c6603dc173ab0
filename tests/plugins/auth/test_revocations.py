"""User-level revocation cut-offs: durable in the data service record, cached in Redis and in
this process, and a token checked against the newest any of them knows (contract §7, §9a)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import attrs
import pytest

from app.clients.dataservice import DataServiceClient, DataServiceOptions
from app.clients.redis import RedisConnection
from plugins.auth.passwords import Argon2Hasher as PasswordHasher
from plugins.auth.revocations import (
    NONE,
    LocalRevocations,
    RecordRevocations,
    RedisRevocations,
    Revocations,
    to_rfc3339,
)
from tests.plugins.auth.conftest import create_user

TTL = 3600


@attrs.define
class Setup:
    data: DataServiceClient
    url: str
    redis: RedisConnection
    prefix: str
    user: int

    def make(self, *, redis: RedisConnection | None = None, with_redis: bool = True) -> Revocations:
        """A process's revocations: its own record, the shared Redis and the data service."""
        shared = RedisRevocations(redis or self.redis, ttl_s=TTL, prefix=self.prefix) if with_redis else None
        return Revocations(LocalRevocations(ttl_s=TTL), RecordRevocations(self.data), shared)

    async def record(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/api/v1/users/{self.user}") as resp:
            body: dict[str, Any] = await resp.json()
        return body

    async def patch(self, **changes: Any) -> None:
        async with aiohttp.ClientSession() as session, session.patch(
            f"{self.url}/api/v1/users/{self.user}", json=changes
        ) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
async def setup(dataservice_url: str, redis_url: str, hasher: PasswordHasher, unique: str) -> AsyncIterator[Setup]:
    data = DataServiceClient(DataServiceOptions(base_url=dataservice_url))
    await data.start()
    redis = RedisConnection(redis_url)
    await redis.start()
    user = await create_user(dataservice_url, hasher, "ann@example.com", "ann password")
    try:
        yield Setup(data, dataservice_url, redis, f"test:{unique}:auth:", user)
    finally:
        await redis.stop()
        await data.close()


async def test_a_revocation_is_kept_here_in_redis_and_in_the_record(setup: Setup) -> None:
    revocations = setup.make()
    before = time.time()
    assert await revocations.revoke(setup.user) is True
    cutoff = await revocations.cutoff(setup.user)
    assert cutoff is not None
    assert before <= cutoff <= time.time()
    assert revocations.local.cutoff(setup.user) == cutoff
    assert float(await setup.redis.client.get(f"{setup.prefix}revoked:{setup.user}") or 0) == cutoff
    recorded = datetime.fromisoformat((await setup.record())["sessions_revoked_at"]).timestamp()
    # Rounded up to the microsecond, never back. At ~1.8e9 s a float's step is ~0.24 µs, so
    # `cutoff + 1e-6` may itself round onto the recorded value: the bound is inclusive.
    assert cutoff <= recorded <= cutoff + 1e-6


def test_the_recorded_cut_off_never_moves_back_not_even_by_a_float_rounding() -> None:
    # `cutoff * 1e6` is rounded to a float step (~0.25 µs at today's times); a ceiling of a
    # product rounded down would record a moment just before the cut-off.
    rng = random.Random(7)
    for _ in range(20_000):
        cutoff = 1_796_119_277 + rng.random()
        recorded = datetime.fromisoformat(to_rfc3339(cutoff)).timestamp()
        assert cutoff <= recorded <= cutoff + 1e-6, (cutoff, recorded)


async def test_a_cut_off_lost_with_redis_is_read_again_from_the_record(setup: Setup) -> None:
    await setup.make().revoke(setup.user)
    cutoff = await setup.make().cutoff(setup.user)
    await setup.redis.client.delete([f"{setup.prefix}revoked:{setup.user}"])  # a node restarted empty

    fresh = setup.make()  # another instance, that never heard of it
    assert await fresh.cutoff(setup.user) == pytest.approx(cutoff, abs=1e-6)
    assert await setup.redis.client.get(f"{setup.prefix}revoked:{setup.user}") is not None  # cached again


async def test_this_process_record_is_a_minimum_not_only_a_fallback(setup: Setup) -> None:
    revocations = setup.make(with_redis=True)
    revocations.record = None  # what a failover that lost the write leaves: Redis says none
    await revocations.revoke(setup.user)
    local = revocations.local.cutoff(setup.user)
    await setup.redis.client.set(f"{setup.prefix}revoked:{setup.user}", NONE)
    assert await revocations.cutoff(setup.user) == local


async def test_a_record_without_a_cut_off_is_cached_as_none(setup: Setup) -> None:
    revocations = setup.make()
    assert await revocations.cutoff(setup.user) is None
    assert await setup.redis.client.get(f"{setup.prefix}revoked:{setup.user}") == NONE


@pytest.mark.parametrize("change", ["deleted", "inactive"])
async def test_a_user_gone_or_disabled_has_every_token_revoked(setup: Setup, change: str) -> None:
    if change == "deleted":
        async with aiohttp.ClientSession() as session:
            await session.delete(f"{setup.url}/api/v1/users/{setup.user}")
    else:
        await setup.patch(is_active=False)
    before = time.time()
    cutoff = await setup.make().cutoff(setup.user)
    assert cutoff is not None
    assert cutoff >= before


async def test_a_late_revocation_never_moves_a_cut_off_back(setup: Setup) -> None:
    revocations = setup.make()
    await revocations.revoke(setup.user)
    newest = await revocations.cutoff(setup.user)
    assert newest is not None
    await revocations.revoke(setup.user, newest - 60, durable=False)
    await setup.make().revoke(setup.user, newest - 60)
    assert await setup.make().cutoff(setup.user) == newest
    recorded = datetime.fromisoformat((await setup.record())["sessions_revoked_at"]).timestamp()
    assert recorded >= newest


async def test_with_redis_down_revocations_wait_for_it_and_checks_ask_the_record(setup: Setup) -> None:
    down = RedisConnection("redis://127.0.0.1:1/0")  # nothing listens there
    await down.start()
    try:
        revocations = setup.make(redis=down)
        assert await revocations.revoke(setup.user) is False  # Redis gets it when it answers
        assert down.pending.holds(f"{setup.prefix}revoked:{setup.user}")
        recorded = await revocations.cutoff(setup.user)

        another = setup.make(redis=down)  # an instance that never heard of it
        assert await another.cutoff(setup.user) == pytest.approx(recorded, abs=1e-6)
    finally:
        await down.stop()


def test_this_process_record_keeps_the_later_cut_off_until_tokens_are_dead() -> None:
    now = [1000.0]
    local = LocalRevocations(ttl_s=10, record_read_ttl_s=2, clock=lambda: now[0])
    local.remember(1, 500.0)
    local.remember(1, 400.0)
    assert local.cutoff(1) == 500.0
    local.remember_read(2, 700.0)
    assert local.read(2) == (True, 700.0)
    now[0] += 3
    assert local.read(2) == (False, None)  # to be read again...
    assert local.last_read(2) == (True, 700.0)  # ...but it stands while the record cannot be
    now[0] += 8
    assert local.cutoff(1) is None
    assert local.last_read(2) == (False, None)  # no older than a token can live


def test_the_record_gets_the_cut_off_rounded_up_to_the_microsecond() -> None:
    assert to_rfc3339(1764504000.2500005) == "2025-11-30T12:00:00.250001Z"
    assert to_rfc3339(1764504000.25) == "2025-11-30T12:00:00.250000Z"
