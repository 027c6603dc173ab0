"""The verification-mail budget: 3 mails a mailbox per window, shared through Redis, tags folded."""

from __future__ import annotations

import pytest

from app import MemoryWindowCounter, RedisWindowCounter
from app.clients.redis import RedisConnection
from plugins.accounts.budget import KEY_PREFIX, VerificationMailBudget, mailbox


def test_a_mailbox_is_the_address_without_its_tag() -> None:
    assert mailbox("victim+1@example.net") == "victim@example.net"
    assert mailbox("victim+a+b@example.net") == "victim@example.net"
    assert mailbox("victim@example.net") == "victim@example.net"


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
async def test_three_mails_then_the_seconds_left(redis_connection: RedisConnection, unique: str, shared: bool) -> None:
    budget = VerificationMailBudget(RedisWindowCounter(redis_connection) if shared else MemoryWindowCounter(),
                                    window_s=600)
    address = f"{unique}@example.net"
    assert [await budget.spend(f"{unique}+{n}@example.net") for n in range(3)] == [None, None, None]
    left = await budget.spend(address)
    assert left is not None
    assert 1 <= left <= 600
    assert await budget.spend(f"other-{unique}@example.net") is None
    if shared:
        # Another instance shares the count; the count always has an expiry.
        assert await VerificationMailBudget(RedisWindowCounter(redis_connection), window_s=600).spend(address) \
            is not None
        keys = [key async for key in redis_connection.client.scan_iter(match=KEY_PREFIX + "*")]
        assert keys
        assert all([await redis_connection.client.ttl(key) > 0 for key in keys])
        await redis_connection.client.delete(keys)
