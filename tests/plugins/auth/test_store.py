from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.clients.redis import RedisConnection, RedisUnavailable
from plugins.auth.store import MemoryTokenStore, RedisTokenStore, Rotated, Rotation, TokenStore

TTL = 60


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[TokenStore]:
    if request.param == "memory":
        yield MemoryTokenStore(revocation_ttl_s=TTL)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        yield RedisTokenStore(connection, prefix=f"test:{unique}:")
    finally:
        await connection.stop()


async def test_rotation_moves_the_current_token(store: TokenStore) -> None:
    await store.start_family("fam", "jti-1", TTL)
    assert (await store.rotate("fam", "jti-1", "jti-2", TTL)).rotation is Rotation.ROTATED
    assert (await store.rotate("fam", "jti-2", "jti-3", TTL)).rotation is Rotation.ROTATED


async def test_reuse_revokes_the_family(store: TokenStore) -> None:
    await store.start_family("fam", "jti-1", TTL)
    await store.rotate("fam", "jti-1", "jti-2", TTL)
    assert (await store.rotate("fam", "jti-1", "jti-x", TTL)).rotation is Rotation.REUSED
    assert (await store.rotate("fam", "jti-2", "jti-3", TTL)).rotation is Rotation.UNKNOWN


async def test_unknown_and_revoked_families(store: TokenStore) -> None:
    assert (await store.rotate("nope", "jti-1", "jti-2", TTL)).rotation is Rotation.UNKNOWN
    await store.start_family("fam", "jti-1", TTL)
    await store.revoke_family("fam")
    assert (await store.rotate("fam", "jti-1", "jti-2", TTL)).rotation is Rotation.UNKNOWN


async def test_families_are_independent(store: TokenStore) -> None:
    await store.start_family("a", "jti-a", TTL)
    await store.start_family("b", "jti-b", TTL)
    await store.revoke_family("a")
    assert (await store.rotate("b", "jti-b", "jti-b2", TTL)).rotation is Rotation.ROTATED


async def test_memory_entries_expire() -> None:
    now = [1000.0]
    store = MemoryTokenStore(revocation_ttl_s=10, clock=lambda: now[0])
    await store.start_family("fam", "jti-1", 5)
    await store.revoke_family("ended")
    assert store.ended("ended")
    now[0] += 11
    assert (await store.rotate("fam", "jti-1", "jti-2", 5)).rotation is Rotation.UNKNOWN
    assert not store.ended("ended")


async def test_redis_down_raises_redis_unavailable() -> None:
    connection = RedisConnection("redis://127.0.0.1:1/0")  # nothing listens there
    await connection.start()
    try:
        store = RedisTokenStore(connection)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.family_alive("f"),
            lambda: store.start_family("f", "j", TTL), lambda: store.rotate("f", "j", "k", TTL),
            lambda: store.revoke_family("f"),
        ]
        for call in calls:
            with pytest.raises(RedisUnavailable):
                await call()
    finally:
        await connection.stop()


GRACE_S = 5.0


async def test_a_second_refresh_within_the_grace_window_gets_the_same_pair(store: TokenStore) -> None:
    await store.start_family("fam", "jti-1", TTL)
    first = await store.rotate("fam", "jti-1", "jti-2", TTL, pair="pair-2", grace_s=GRACE_S)
    again = await store.rotate("fam", "jti-1", "jti-2b", TTL, pair="pair-2b", grace_s=GRACE_S)
    assert first.rotation is Rotation.ROTATED
    assert again == Rotated(Rotation.REPEATED, "pair-2")
    assert (await store.rotate("fam", "jti-2", "jti-3", TTL)).rotation is Rotation.ROTATED  # jti-2 stayed current


async def test_the_grace_ends_once_the_pair_it_gave_was_rotated_in_turn(store: TokenStore) -> None:
    await store.start_family("fam", "jti-1", TTL)
    await store.rotate("fam", "jti-1", "jti-2", TTL, pair="pair-2", grace_s=GRACE_S)
    await store.rotate("fam", "jti-2", "jti-3", TTL, pair="pair-3", grace_s=GRACE_S)
    assert (await store.rotate("fam", "jti-1", "jti-x", TTL, grace_s=GRACE_S)).rotation is Rotation.REUSED
    assert not await store.family_alive("fam")


async def test_a_replay_after_the_grace_window_revokes_the_family(store: TokenStore) -> None:
    await store.start_family("fam", "jti-1", TTL)
    await store.rotate("fam", "jti-1", "jti-2", TTL, pair="pair-2", grace_s=0.05)
    await asyncio.sleep(0.1)
    assert (await store.rotate("fam", "jti-1", "jti-x", TTL, grace_s=0.05)).rotation is Rotation.REUSED
    assert not await store.family_alive("fam")


def test_ends_heard_from_elsewhere_are_kept_as_long_as_asked_and_swept_after() -> None:
    now = [0.0]
    store = MemoryTokenStore(revocation_ttl_s=1000, clock=lambda: now[0])
    store.remember_ended("short", for_s=10)
    store.remember_ended("long")
    now[0] = 11.0
    assert not store.ended("short")
    assert store.ended("long")
    for n in range(2048):  # ends of other instances' sessions, each for 10 s
        store.remember_ended(f"f{n}", for_s=10)
        now[0] += 0.01
    now[0] += 20.0
    store.remember_ended("last", for_s=10)  # the sweeps run as ends are recorded
    for n in range(2048):
        store.remember_ended(f"g{n}", for_s=100)
    assert len(store._ended) < 2048 + 2048  # the expired f-ends were swept, not kept for ever
