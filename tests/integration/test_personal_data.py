"""What Redis keeps of a person: no address in any key or value, and what a deleted user's
sessions were, gone with the user (docs/privacy.md)."""

from __future__ import annotations

import hashlib
from typing import Any

from app.clients.redis import RedisConnection
from tests.integration.accounts import (
    PASSWORD,
    inbox_fixture,  # noqa: F401  # the `inbox` fixture
    reset_token,
    verification_token,
)
from tests.integration.conftest import StackFactory, admin_headers, bearer, login, register
from tests.smtp import SmtpInbox

ANN = "ann.privacy@example.com"


async def everything_in(redis_url: str) -> dict[str, str]:
    """Every key of the database with what it holds, as text (standalone, or every master of a cluster)."""
    connection = RedisConnection(redis_url)
    await connection.start()
    try:
        redis: Any = connection.client
        found: dict[str, str] = {}
        async for raw_key in redis.scan_iter(match="*"):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            kind = await redis.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "string":
                value: Any = await redis.get(key)
            elif kind == "hash":
                value = await redis.hgetall(key)
            elif kind == "list":
                value = await redis.lrange(key, 0, -1)
            elif kind == "set":
                value = await redis.smembers(key)
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1)
            else:
                value = await redis.xrange(key) if kind == "stream" else kind
            found[key] = str(value)
        return found
    finally:
        await connection.stop()


async def test_a_deleted_user_leaves_no_address_and_no_sessions_in_redis(
    inbox: SmtpInbox, stack: StackFactory, redis_db: str
) -> None:
    client = await stack(redis_url=redis_db)
    user = await register(client, ANN, PASSWORD)  # a verification link...
    await verification_token(inbox, ANN)
    await reset_token(client, inbox, ANN)  # ...a reset link...
    tokens = await login(client, ANN, PASSWORD)  # ...a session...
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=bearer(tokens))).status == 200  # ...cached
    sessions_key = f"turnstile:auth:sessions:{user['id']}"
    before = await everything_in(redis_db)
    assert sessions_key in before
    assert any(ANN in value for value in before.values())  # the cached user: the scan reads values
    assert any(key.startswith("turnstile:accounts:token:") for key in before)

    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=await admin_headers(client))
    assert deleted.status == 204

    after = await everything_in(redis_db)
    assert sessions_key not in after
    # The links' records outlive the account (until they expire) but name nobody: neither the
    # address nor its plain digest is in any key or value.
    assert any(key.startswith("turnstile:accounts:token:") for key in after)
    digest = hashlib.sha256(ANN.encode()).hexdigest()
    leaks = {key: value for key, value in after.items() if ANN in key + value or digest in key + value}
    assert leaks == {}
