"""The default pipelines end to end: register, log in, read, change, delete."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import StackFactory, admin_headers, bearer, login, register


async def test_register_login_me_get_patch_delete(stack: StackFactory) -> None:
    client = await stack()
    user = await register(client, " Ann@Example.COM ", full_name="Ann")
    assert user["email"] == "ann@example.com"
    assert user["roles"] == ["user"]
    assert "password_hash" not in user
    tokens = await login(client, "ann@example.com", "correct-horse-1")
    me = await client.get("/api/v1/auth/me", headers=bearer(tokens))
    assert (await me.json())["id"] == user["id"]
    got = await client.get(f"/api/v1/users/{user['id']}", headers=bearer(tokens))
    assert got.headers["X-Cache"] == "MISS"
    patched = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Ann B"}, headers=bearer(tokens))
    assert (await patched.json())["full_name"] == "Ann B"
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=await admin_headers(client))
    assert deleted.status == 204
    gone = await client.get("/api/v1/auth/me", headers=bearer(tokens))
    assert gone.status == 401


async def test_readyz_reports_real_redis_rabbitmq_and_outbox(stack: StackFactory, redis_db: str, amqp_url: str) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=amqp_url)
    body: dict[str, object] = {}
    for _ in range(50):
        resp = await client.get("/readyz")
        body = await resp.json()
        if body["checks"] == {"data_service": "ok", "redis": "ok", "rabbitmq": "connected", "outbox": "empty"}:
            assert resp.status == 200
            assert body["status"] == "ready"
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready with every dependency up: {body}")
