"""The data service's answers are checked against each pipeline's response model (contract §7):
an answer of the wrong shape is a 502, fields the model does not declare never leave, not even
into the cache. The real reference data service sits behind the fault proxy."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import coredis
import orjson
import pytest
from prometheus_client import REGISTRY

from app.keys import data_service_key
from plugins.users.models import User
from tests.integration.conftest import Client, StackFactory, admin_headers, assert_problem, bearer, login, register
from tests.integration.faults import EXTRA_FIELDS, FaultProxy, Mode

PASSWORD = "correct-horse-1"
PUBLIC_FIELDS = set(attrs.fields_dict(User))
CACHE_PREFIX = ""  # the cache keys are the pipelines file's own (contract §8: user:{id})




async def signed_in(stack: StackFactory, proxy: FaultProxy, **settings: Any) -> tuple[Client, int, dict[str, str]]:
    """The service behind `proxy`, a registered user's id, and an admin's bearer headers."""
    client = await stack(data_service_url=proxy.url, data_service_retries=0, breaker_failures=100, **settings)
    user = await register(client, "ann@example.com", PASSWORD)
    return client, int(user["id"]), await admin_headers(client)


BAD_ANSWERS: list[Mode] = ["hello-world", "json-list", "missing-field", "wrong-type"]
FIRST_PROBLEM = {
    "hello-world": "id: missing required field",
    "json-list": "(the answer): expected a JSON object",
    "missing-field": "created_at: missing required field",
    "wrong-type": "is_active: expected true or false",
}


@pytest.mark.parametrize("mode", BAD_ANSWERS)
async def test_a_record_of_the_wrong_shape_is_a_502_logged_once_without_its_values(
    stack: StackFactory, proxy: FaultProxy, caplog: pytest.LogCaptureFixture, mode: Mode
) -> None:
    client, user_id, admin = await signed_in(stack, proxy)
    ann = bearer(await login(client, "ann@example.com", PASSWORD))
    proxy.mode = mode

    with caplog.at_level(logging.WARNING, logger="turnstile.data_fetch"):
        for path, headers in ((f"/api/v1/users/{user_id}", admin), ("/api/v1/auth/me", ann)):
            problem = await assert_problem(await client.get(path, headers=headers), 502)
            assert problem["type"].endswith("/bad-gateway")

    lines = [r.getMessage() for r in caplog.records if r.name == "turnstile.data_fetch"]
    assert lines == [
        f"pipeline get_user: the data service's answer does not fit User: {FIRST_PROBLEM[mode]}",
        f"pipeline me: the data service's answer does not fit User: {FIRST_PROBLEM[mode]}",
    ]
    assert "ann@example.com" not in "".join(lines)  # the exact lines above: rule and place, no value
    # Nothing was cached: the next good answer is a miss.
    proxy.mode = "pass"
    fresh = await client.get(f"/api/v1/users/{user_id}", headers=admin)
    assert fresh.status == 200
    assert fresh.headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("mode", BAD_ANSWERS)
async def test_a_page_with_a_bad_record_is_a_502(stack: StackFactory, proxy: FaultProxy, mode: Mode) -> None:
    client, _, admin = await signed_in(stack, proxy)
    proxy.mode = mode

    await assert_problem(await client.get("/api/v1/users", headers=admin), 502)


def calls(upstream: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("turnstile_data_service_calls_total", {"upstream": upstream, "outcome": outcome})
    return value or 0.0


async def test_an_answer_of_the_wrong_shape_counts_as_bad_gateway(stack: StackFactory, proxy: FaultProxy) -> None:
    # The runbooks send an operator to `bad_gateway` for this very case (a version mismatch);
    # it counted as `ok`, and never against the circuit breaker.
    client, _, admin = await signed_in(stack, proxy)
    upstream = client.app[data_service_key].name

    async def outcomes_of_a_listing() -> tuple[float, float]:
        ok, bad = calls(upstream, "ok"), calls(upstream, "bad_gateway")
        await client.get("/api/v1/users", headers=admin)  # never cached: one call for the page
        return calls(upstream, "ok") - ok, calls(upstream, "bad_gateway") - bad

    assert await outcomes_of_a_listing() == (1, 0)
    proxy.mode = "json-list"
    assert await outcomes_of_a_listing() == (0, 1)


async def test_a_write_whose_answer_does_not_fit_is_a_502(stack: StackFactory, proxy: FaultProxy) -> None:
    client, user_id, admin = await signed_in(stack, proxy)
    proxy.mode = "wrong-type"

    await assert_problem(await client.patch(f"/api/v1/users/{user_id}", json={"full_name": "Ann"}, headers=admin), 502)
    await assert_problem(await client.post("/api/v1/users", json={"email": "bob@example.com", "password": PASSWORD},
                                           headers=admin), 502)


async def test_fields_the_model_does_not_declare_are_dropped_everywhere(
    stack: StackFactory, proxy: FaultProxy, redis_db: str
) -> None:
    client, user_id, admin = await signed_in(stack, proxy, redis_url=redis_db)
    ann = bearer(await login(client, "ann@example.com", PASSWORD))
    proxy.mode = "extra-fields"

    answers = [
        await (await client.get(f"/api/v1/users/{user_id}", headers=admin)).json(),
        await (await client.get("/api/v1/auth/me", headers=ann)).json(),
        await (await client.patch(f"/api/v1/users/{user_id}", json={"full_name": "Ann"}, headers=admin)).json(),
        *(await (await client.get("/api/v1/users", headers=admin)).json())["items"],
    ]

    for answer in answers:
        assert set(answer) == PUBLIC_FIELDS, answer
    assert {"sessions_revoked_at", "internal_note", "password_hash"}.isdisjoint(PUBLIC_FIELDS)
    # The cache entry holds the public record only.
    fill = await client.get(f"/api/v1/users/{user_id}", headers=admin)
    assert fill.headers["X-Cache"] == "MISS"  # the PATCH invalidated it
    redis: coredis.Redis[bytes] = coredis.Redis.from_url(redis_db)
    async with redis:
        stored = await redis.get(f"{CACHE_PREFIX}user:{user_id}")
    assert stored is not None
    assert set(orjson.loads(stored)) == PUBLIC_FIELDS
    for name, value in EXTRA_FIELDS.items():
        if name not in PUBLIC_FIELDS:
            assert name.encode() not in stored
            assert str(value).encode() not in stored
    hit = await client.get(f"/api/v1/users/{user_id}", headers=admin)
    assert hit.headers["X-Cache"] == "HIT"
    assert set(await hit.json()) == PUBLIC_FIELDS


async def test_a_record_that_does_not_fit_is_a_502_for_login_and_refresh_and_ends_no_session(
    stack: StackFactory, proxy: FaultProxy
) -> None:
    # Read as it came, `is_active: 1` made the login "disabled" (403) and the refresh end the
    # session for good (401), though the account was fine and the data service at fault.
    client, _, _ = await signed_in(stack, proxy)
    tokens = await login(client, "ann@example.com", PASSWORD)
    proxy.mode = "wrong-type"

    await assert_problem(await client.post("/api/v1/auth/login",
                                           json={"email": "ann@example.com", "password": PASSWORD}), 502)
    await assert_problem(await client.post("/api/v1/auth/refresh",
                                           json={"refresh_token": tokens["refresh_token"]}), 502)

    proxy.mode = "pass"
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200, await refreshed.text()


async def test_an_answer_for_another_user_is_a_502_and_never_cached_under_this_one(
    stack: StackFactory, proxy: FaultProxy, redis_db: str
) -> None:
    client, user_id, admin = await signed_in(stack, proxy, redis_url=redis_db)
    proxy.mode = "other-record"  # user 1 (the start-up admin) for whoever is asked
    resp = await client.get(f"/api/v1/users/{user_id}", headers=admin)
    await assert_problem(resp, 502)
    assert "admin@" not in await resp.text()
    async with coredis.Redis.from_url(redis_db) as redis:
        assert await redis.get(f"{CACHE_PREFIX}user:{user_id}") is None
    proxy.mode = "pass"
    assert (await (await client.get(f"/api/v1/users/{user_id}", headers=admin)).json())["id"] == user_id


async def test_a_lookup_by_email_takes_only_the_account_with_that_address(
    stack: StackFactory, proxy: FaultProxy
) -> None:
    client, _user_id, _admin = await signed_in(stack, proxy)  # the admin first, then ann
    proxy.mode = "loose-email"  # every lookup by email answers every user
    ann = await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert ann.status == 200, await ann.text()  # not the admin's record, the first of the page
    nobody = await client.post("/api/v1/auth/login", json={"email": "nn@example.com", "password": PASSWORD})
    await assert_problem(nobody, 401)


async def test_records_of_the_wrong_shape_do_not_open_the_circuit(stack: StackFactory, proxy: FaultProxy) -> None:
    # The data service answers: one bad row, read at will by its user, must not refuse every other
    # user with "calls are paused" (503) as an unreachable one would.
    client = await stack(data_service_url=proxy.url, data_service_retries=0, breaker_failures=3)
    user = await register(client, "ann@example.com", PASSWORD)
    admin = await admin_headers(client)
    proxy.mode = "missing-field"
    for _ in range(6):
        await assert_problem(await client.get(f"/api/v1/users/{user['id']}", headers=admin), 502)
    proxy.mode = "pass"
    assert (await client.get("/api/v1/auth/me", headers=admin)).status == 200
