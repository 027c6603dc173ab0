"""A Redis that comes back with older data (contract §9a: "a failover that lost writes"): a
server of the test's own, snapshotted, then killed and started again from the snapshot, so
every write made after the snapshot is undone, as a promoted replica that lagged undoes them.

Before the watch, a session ended after the snapshot worked again on every instance, and a user
changed after it was read as it was before, from the cache, for the entry's hour."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app import RollbackWatch
from app.clients.redis import RedisConnection
from tests.integration.accounts import ME, PASSWORD
from tests.integration.amqp_capture import eventually
from tests.integration.conftest import StackFactory, bearer, login, register
from tests.snapshot_redis import SnapshotRedis


def rolled_back_at(watch: RollbackWatch) -> float | None:
    """When the last rollback was noticed (read through a call: it changes under the awaits)."""
    return watch.rolled_back_at


def rollbacks() -> float:
    return REGISTRY.get_sample_value("turnstile_auth_redis_rollbacks_total") or 0.0


async def test_a_count_gone_down_is_a_rollback_and_a_restart_with_everything_is_not(
    snapshot_redis: SnapshotRedis,
) -> None:
    connection = RedisConnection(snapshot_redis.url)
    await connection.start()
    try:
        watch = RollbackWatch(connection)
        await watch.counted()
        await snapshot_redis.snapshot()  # everything saved: a restart from here loses nothing
        await snapshot_redis.roll_back()
        await eventually(lambda: _checks(watch), 10, "Redis answered again")
        assert rolled_back_at(watch) is None

        before = rollbacks()
        await watch.counted()
        await watch.counted()  # not in the snapshot: undone by the roll-back
        await snapshot_redis.roll_back()
        await eventually(lambda: _checks(watch), 10, "Redis answered again")
        assert rolled_back_at(watch) is not None
        assert rollbacks() == before + 1

        # A process started after it learns the cut-off from Redis, with nothing of its own seen.
        newcomer = RollbackWatch(connection)
        await newcomer.check()
        assert newcomer.rolled_back_at == watch.rolled_back_at
    finally:
        await connection.stop()


async def _checks(watch: RollbackWatch) -> bool:
    try:
        await watch.check()
    except Exception:  # reconnecting after the restart
        return False
    return True


async def test_a_session_ended_after_the_snapshot_stays_ended_when_redis_rolls_back(
    stack: StackFactory, snapshot_redis: SnapshotRedis,
) -> None:
    client = await stack(redis_url=snapshot_redis.url)
    await register(client, "ann@example.com")
    phone = await login(client, "ann@example.com", PASSWORD)
    await snapshot_redis.snapshot()
    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": phone["refresh_token"]},
                               headers=bearer(phone))
    assert logout.status == 204
    assert (await client.get(ME, headers=bearer(phone))).status == 401

    await snapshot_redis.roll_back()  # the logout is undone in Redis: the session's record is back

    async def refused_again() -> bool:
        return (await client.get(ME, headers=bearer(phone))).status == 401

    # Refused throughout, once Redis answers (and for ever after): every session was ended.
    await eventually(refused_again, 10, "Redis answered again")
    for _ in range(5):
        await asyncio.sleep(0.3)
        assert await refused_again()
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert refreshed.status == 401
    # Logging in again works: the price is a new session.
    again = await login(client, "ann@example.com", PASSWORD)
    assert (await client.get(ME, headers=bearer(again))).status == 200


async def test_a_user_changed_after_the_snapshot_is_not_read_stale_from_the_cache_when_redis_rolls_back(
    stack: StackFactory, snapshot_redis: SnapshotRedis,
) -> None:
    client = await stack(redis_url=snapshot_redis.url)
    ann = await register(client, "ann@example.com", full_name="Ann Before")
    read = f"/api/v1/users/{ann['id']}"
    tokens = await login(client, "ann@example.com", PASSWORD)
    assert (await client.get(read, headers=bearer(tokens))).headers["X-Cache"] == "MISS"
    assert (await client.get(read, headers=bearer(tokens))).headers["X-Cache"] == "HIT"
    await snapshot_redis.snapshot()  # holds the entry of "Ann Before"
    changed = await client.patch(read, json={"full_name": "Ann After"}, headers=bearer(tokens))
    assert changed.status == 200, await changed.text()

    await snapshot_redis.roll_back()  # the entry of "Ann Before" is back; no session ended since

    async def read_fresh() -> bool:
        with contextlib.suppress(Exception):  # Redis reconnecting; the session ended by the rollback
            again = await login(client, "ann@example.com", PASSWORD)
            response = await client.get(read, headers=bearer(again))
            return response.status == 200 and (await response.json())["full_name"] == "Ann After"
        return False

    await eventually(read_fresh, 10, "the changed user read again")
    for _ in range(3):  # and for ever after: the entry of before is gone, not just missed once
        await asyncio.sleep(0.3)
        assert await read_fresh()


async def test_a_spent_refresh_token_stays_spent_when_redis_rolls_back(
    stack: StackFactory, snapshot_redis: SnapshotRedis,
) -> None:
    client = await stack(redis_url=snapshot_redis.url)
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    await snapshot_redis.snapshot()  # the first refresh token is current in it
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200
    before = rollbacks()
    await snapshot_redis.roll_back()  # the rotation is undone: the spent token is current again

    async def noticed() -> bool:
        return rollbacks() > before

    await eventually(noticed, 10, "the rollback noticed")
    spent = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert spent.status == 401


async def test_a_logout_redis_missed_is_made_when_it_answers_again(
    stack: StackFactory, snapshot_redis: SnapshotRedis,
) -> None:
    # §9a: "a revocation that could not be written while Redis was down is applied when it
    # returns". The logout answers 503 (the client may never retry); the other instance must
    # still refuse the session once Redis is back with it.
    one = await stack(redis_url=snapshot_redis.url)
    other = await stack(redis_url=snapshot_redis.url)
    await register(one, "ann@example.com")
    tokens = await login(one, "ann@example.com", PASSWORD)
    assert (await other.get(ME, headers=bearer(tokens))).status == 200
    await snapshot_redis.snapshot()  # Redis comes back with the session in it
    snapshot_redis.stop()
    logout = await one.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]},
                            headers=bearer(tokens))
    assert logout.status == 503
    assert (await one.get(ME, headers=bearer(tokens))).status == 401  # this instance knows at once
    await snapshot_redis.start()

    async def refused_by_the_other() -> bool:
        return (await other.get(ME, headers=bearer(tokens))).status == 401

    await eventually(refused_by_the_other, 10, "the logout made in Redis")
    refreshed = await other.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 401


@pytest.mark.parametrize(("policy", "warned"), [("allkeys-lru", True), ("volatile-lru", False)])
async def test_an_eviction_policy_that_may_drop_the_count_is_named_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str, warned: bool,
) -> None:
    server = SnapshotRedis(tmp_path, "--maxmemory-policy", policy)
    await server.start()
    connection = RedisConnection(server.url)
    await connection.start()
    try:
        with caplog.at_level(logging.WARNING, logger="turnstile.redis"):
            await RollbackWatch(connection).warn_of_eviction()
        assert any(policy in record.getMessage() for record in caplog.records) is warned
    finally:
        await connection.stop()
        server.stop()


async def test_a_session_another_instance_ended_stays_ended_here_while_redis_is_down(
    stack: StackFactory, snapshot_redis: SnapshotRedis,
) -> None:
    # Without Redis the access check has only this instance's record of ended sessions: the ends
    # another instance made are heard through Redis's pushes and recorded before it goes away.
    one = await stack(redis_url=snapshot_redis.url)
    other = await stack(redis_url=snapshot_redis.url)
    await register(one, "ann@example.com")
    await register(one, "bob@example.com")
    ann = await login(one, "ann@example.com", PASSWORD)
    bob = await login(one, "bob@example.com", PASSWORD)
    assert (await other.get(ME, headers=bearer(ann))).status == 200  # the session, alive, in its mirror
    logout = await one.post("/api/v1/auth/logout", json={"refresh_token": ann["refresh_token"]}, headers=bearer(ann))
    assert logout.status == 204
    await asyncio.sleep(0.5)  # the push and the read after it take a millisecond or two

    snapshot_redis.stop()

    assert (await other.get(ME, headers=bearer(ann))).status == 401
    assert (await other.get(ME, headers=bearer(bob))).status == 200  # sessions not ended still work
