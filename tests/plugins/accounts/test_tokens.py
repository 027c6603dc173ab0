"""Tokens in mails, on the memory store and on the real Redis: single use, purpose, expiry,
given back after a failure, and stored only as a digest."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import coredis
import pytest

from app import RedisConnection
from plugins.accounts.tokens import (
    KEY_PREFIX,
    RESET,
    VERIFY,
    MailTokens,
    MemoryRecordStore,
    RecordStore,
    RedisRecordStore,
    TokenRecord,
    password_fingerprint,
)

TOKEN_DB = 14


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisRecordStore]:
    url = redis_url.rsplit("/", 1)[0] + f"/{TOKEN_DB}"
    raw: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with raw:
        await raw.flushdb()
    connection = RedisConnection(url)
    await connection.start()
    try:
        yield RedisRecordStore(connection)
    finally:
        await connection.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> RecordStore:
    if request.param == "redis":
        redis_store: RedisRecordStore = request.getfixturevalue("redis_store")
        return redis_store
    return MemoryRecordStore()


async def test_a_token_is_redeemed_once_for_its_own_purpose(store: RecordStore) -> None:
    tokens = MailTokens(store)
    token = await tokens.issue(VERIFY, user_id=7, email="ann@example.com", state="", ttl_s=60)
    assert await tokens.redeem(RESET, token) is None  # another purpose finds nothing...
    record = await tokens.redeem(VERIFY, token)  # ...and spends nothing
    assert record is not None
    assert (record.purpose, record.user_id) == (VERIFY, 7)
    assert record.sent_to(token, "ann@example.com")
    assert not record.sent_to(token, "bob@example.com")
    assert not record.sent_to(token + "x", "ann@example.com")
    assert await tokens.redeem(VERIFY, token) is None


async def test_concurrent_redeems_of_one_token_succeed_once(store: RecordStore) -> None:
    tokens = MailTokens(store)
    token = await tokens.issue(RESET, user_id=7, email="ann@example.com", state="abc", ttl_s=60)
    results = await asyncio.gather(*(tokens.redeem(RESET, token) for _ in range(20)))
    assert sum(result is not None for result in results) == 1


async def test_an_expired_token_is_refused() -> None:
    clock = Clock()
    tokens = MailTokens(MemoryRecordStore(clock=clock), clock=clock)
    token = await tokens.issue(VERIFY, user_id=7, email="ann@example.com", state="", ttl_s=60)
    clock.now += 61
    assert await tokens.redeem(VERIFY, token) is None


async def test_a_redis_token_expires_with_its_key(redis_store: RedisRecordStore) -> None:
    tokens = MailTokens(redis_store)
    token = await tokens.issue(VERIFY, user_id=7, email="ann@example.com", state="", ttl_s=1)
    await asyncio.sleep(1.2)
    assert await tokens.redeem(VERIFY, token) is None


async def test_a_token_given_back_works_again_for_the_rest_of_its_life(store: RecordStore) -> None:
    tokens = MailTokens(store)
    token = await tokens.issue(RESET, user_id=7, email="ann@example.com", state="abc", ttl_s=60)
    record = await tokens.redeem(RESET, token)
    assert record is not None
    await tokens.give_back(token, record)
    assert await tokens.redeem(RESET, token) == record


async def test_voiding_refuses_what_was_issued_before_and_only_for_that_user(store: RecordStore) -> None:
    clock = Clock()
    tokens = MailTokens(store, clock=clock)
    before = await tokens.issue(RESET, user_id=7, email="ann@example.com", state="abc", ttl_s=60)
    someone_elses = await tokens.issue(VERIFY, user_id=8, email="bob@example.com", state="", ttl_s=60)
    clock.now += 1
    await tokens.void_issued_before(7, ttl_s=60)
    after = await tokens.issue(VERIFY, user_id=7, email="ann@example.com", state="", ttl_s=60)
    assert await tokens.redeem(RESET, before) is None
    assert await tokens.redeem(VERIFY, after) is not None
    assert await tokens.redeem(VERIFY, someone_elses) is not None


def test_a_record_written_before_issue_times_were_kept_reads_as_issued_at_zero() -> None:
    # So any later voiding refuses it: it was issued before anything that voids now.
    old = '{"purpose":"reset","user_id":7,"email":"ann@example.com","state":"abc","expires_at":5.0}'
    record = TokenRecord.from_json(old)
    assert record is not None
    assert record.issued_at == 0.0


def test_a_record_written_with_the_address_itself_still_matches_it() -> None:
    # Records of older builds hold the address, not a proof: their links keep working.
    old = '{"purpose":"verify","user_id":7,"email":"ann@example.com","state":"","expires_at":5.0,"issued_at":1.0}'
    record = TokenRecord.from_json(old)
    assert record is not None
    assert record.sent_to("any-token", "ann@example.com")
    assert not record.sent_to("any-token", "bob@example.com")
    assert not TokenRecord(purpose=VERIFY, user_id=7, state="", expires_at=5.0).sent_to("t", "")


async def test_redis_holds_a_digest_of_the_token_never_the_token(
    redis_store: RedisRecordStore, redis_url: str
) -> None:
    token = await MailTokens(redis_store).issue(VERIFY, user_id=7, email="ann@example.com", state="", ttl_s=60)
    raw: coredis.Redis[str] = coredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{TOKEN_DB}",
                                                     decode_responses=True)
    async with raw:
        keys = [key async for key in raw.scan_iter(match=f"{KEY_PREFIX}*")]
        values = [await raw.get(key) for key in keys]
    assert len(keys) == 1
    assert token not in keys[0]
    assert token not in str(values)


async def test_redis_holds_no_address_only_a_proof_keyed_by_the_token(
    redis_store: RedisRecordStore, redis_url: str
) -> None:
    # A record outliving its account (deleted, or its address changed) names nobody.
    await MailTokens(redis_store).issue(RESET, user_id=7, email="ann@example.com", state="abc", ttl_s=60)
    raw: coredis.Redis[str] = coredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{TOKEN_DB}",
                                                     decode_responses=True)
    async with raw:
        values = [await raw.get(key) async for key in raw.scan_iter(match=f"{KEY_PREFIX}*")]
    assert len(values) == 1
    assert "ann" not in str(values)
    assert "example.com" not in str(values)
    assert hashlib.sha256(b"ann@example.com").hexdigest() not in str(values)


def test_the_password_fingerprint_follows_the_hash_and_is_not_it() -> None:
    first = password_fingerprint("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA")
    assert first == password_fingerprint("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA")
    assert first != password_fingerprint("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$b3RoZXI")
    assert "argon2" not in first
