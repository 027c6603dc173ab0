"""A write the data service saved is followed through when making its answer fails: a team's
`transform_response` that raises, or an upstream answer that does not fit the model. The request
answers its error, and the sessions the change ends end, the cache forgets the user and the
event goes out (contract §4, §9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app import hookimpl
from tests.integration.accounts import events_written
from tests.integration.conftest import StackFactory, admin_headers, assert_problem, bearer, login, register
from tests.integration.faults import FaultProxy

PASSWORD, NEW_PASSWORD = "correct-horse-1", "new-horse-22"


class BrokenTransform:
    """A team's `transform_response` that fails on the PATCH route only."""

    @hookimpl
    def transform_response(self, pipeline: Any, data: Any) -> Any:
        if pipeline.name == "update_user":
            msg = "a team's rule broke"
            raise RuntimeError(msg)
        return None


async def test_a_saved_password_change_whose_answer_fails_still_ends_sessions_cache_and_event(
    stack: StackFactory, tmp_path: Path,
) -> None:
    client = await stack(plugins=(BrokenTransform(),))
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    admin = await admin_headers(client)
    path = f"/api/v1/users/{user['id']}"
    assert (await client.get(path, headers=admin)).headers["X-Cache"] == "MISS"
    assert (await client.get(path, headers=admin)).headers["X-Cache"] == "HIT"

    change = {"password": NEW_PASSWORD, "current_password": PASSWORD}
    resp = await client.patch(path, headers=bearer(tokens), json=change)

    await assert_problem(resp, 500)
    await login(client, "ann@example.com", NEW_PASSWORD)  # saved
    await assert_problem(await client.get("/api/v1/auth/me", headers=bearer(tokens)), 401)
    assert (await client.get(path, headers=admin)).headers["X-Cache"] == "MISS"
    [event] = [e for e in events_written(tmp_path / "var") if e["type"] == "user.updated"]
    assert event["data"]["id"] == user["id"]
    assert event["data"]["email"] == "ann@example.com"  # the checked answer, before the broken hook
    assert "password_hash" not in event["data"]


async def test_a_saved_change_whose_answer_does_not_fit_still_ends_sessions_cache_and_event(
    stack: StackFactory, dataservice: str, tmp_path: Path,
) -> None:
    proxy = FaultProxy(dataservice)
    await proxy.start()
    try:
        client = await stack(data_service_url=proxy.url, data_service_retries=0, breaker_failures=100)
        user = await register(client, "ann@example.com")
        tokens = await login(client, "ann@example.com", PASSWORD)
        admin = await admin_headers(client)
        path = f"/api/v1/users/{user['id']}"
        await client.get(path, headers=admin)
        assert (await client.get(path, headers=admin)).headers["X-Cache"] == "HIT"

        proxy.mode = "wrong-type"  # the write is saved; its answer comes back unusable
        await assert_problem(await client.patch(path, headers=admin, json={"password": NEW_PASSWORD}), 502)
        proxy.mode = "pass"

        await login(client, "ann@example.com", NEW_PASSWORD)  # saved
        await assert_problem(await client.get("/api/v1/auth/me", headers=bearer(tokens)), 401)
        assert (await client.get(path, headers=admin)).headers["X-Cache"] == "MISS"
        # No usable answer to describe the user: the event carries the route's parameters.
        [event] = [e for e in events_written(tmp_path / "var") if e["type"] == "user.updated"]
        assert event["data"] == {"id": user["id"]}
    finally:
        await proxy.close()
