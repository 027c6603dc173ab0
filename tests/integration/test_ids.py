"""`{id}` in a user route (contract §4): ASCII digits, no leading zeros, at most 2^63-1.

Any other spelling names no user: a 404 that looks like an unknown route, answered before
any step runs, so neither the data service nor Redis hears of it and no ERROR line is logged.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import coredis
import pytest

from tests.integration.conftest import Client, StackFactory, admin_headers, assert_problem, bearer, login, register
from tests.integration.faults import FaultProxy

USERS = "/api/v1/users"
PASSWORD = "correct-horse-1"
MAX_ID = 2**63 - 1

NOT_IDS = {
    "too-long": "99999999999999999999999999",
    "just-over-the-maximum": str(MAX_ID + 1),
    "nineteen-nines": "9" * 19,
    "arabic-indic-three": "\u0663",
    "fullwidth-three": "\uff13",
    "leading-zero": "03",
    "zeros": "00",
    "negative": "-1",
    "plus-sign": "+3",
    "underscore": "1_0",
    "thousands-of-digits": "1" * 5000,
}




@attrs.frozen
class Watched:
    """The service on the real Redis, its data service behind a call-counting proxy."""

    client: Client
    admin: dict[str, str]
    proxy: FaultProxy
    redis_db: str


@pytest.fixture
async def watched(stack: StackFactory, proxy: FaultProxy, redis_db: str) -> Watched:
    client = await stack(data_service_url=proxy.url, redis_url=redis_db)
    return Watched(client, await admin_headers(client), proxy, redis_db)


async def redis_keys(redis_db: str) -> list[str]:
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_db, decode_responses=True)
    async with client:
        return sorted([key async for key in client.scan_iter()])


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("case", list(NOT_IDS))
@pytest.mark.parametrize(("method", "body"), [("GET", None), ("PATCH", {"full_name": "X"}), ("DELETE", None)])
async def test_a_value_that_is_no_id_is_404_without_calling_anything(
    watched: Watched, caplog: pytest.LogCaptureFixture, case: str, method: str, body: dict[str, Any] | None
) -> None:
    client = watched.client
    keys_before = await redis_keys(watched.redis_db)
    calls_before = watched.proxy.calls
    caplog.set_level(logging.INFO)

    resp = await client.request(method, f"{USERS}/{NOT_IDS[case]}", json=body, headers=watched.admin)

    problem = await assert_problem(resp, 404)
    unknown_route = await assert_problem(await client.get("/api/v1/nothing-here"), 404)
    assert {k: v for k, v in problem.items() if k != "request_id"} == \
        {k: v for k, v in unknown_route.items() if k != "request_id"}
    assert watched.proxy.calls == calls_before
    assert await redis_keys(watched.redis_db) == keys_before
    assert errors(caplog) == []


async def test_the_largest_id_is_asked_of_the_data_service(
    watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    calls_before = watched.proxy.calls
    caplog.set_level(logging.INFO)
    resp = await watched.client.get(f"{USERS}/{MAX_ID}", headers=watched.admin)
    problem = await assert_problem(resp, 404)
    assert problem["detail"] != "No route matches this path."  # the data service said so
    assert watched.proxy.calls == calls_before + 1
    assert errors(caplog) == []


async def test_a_leading_zero_never_reads_a_stale_copy(stack: StackFactory, redis_db: str) -> None:
    client = await stack(redis_url=redis_db)
    user = await register(client, "ann@example.com", PASSWORD)
    ann, admin = bearer(await login(client, "ann@example.com", PASSWORD)), await admin_headers(client)
    canonical, padded = f"{USERS}/{user['id']}", f"{USERS}/0{user['id']}"

    for headers in (admin, admin, ann):  # a second read would be a HIT if the first was cached
        await assert_problem(await client.get(padded, headers=headers), 404)
    assert (await client.get(canonical, headers=ann)).headers["X-Cache"] == "MISS"
    await assert_problem(await client.patch(padded, json={"full_name": "Padded"}, headers=admin), 404)
    patched = await client.patch(canonical, json={"full_name": "Ann B"}, headers=ann)
    assert patched.status == 200, await patched.text()

    again = await client.get(padded, headers=admin)
    await assert_problem(again, 404)
    assert "X-Cache" not in again.headers
    fresh = await client.get(canonical, headers=admin)
    assert (await fresh.json())["full_name"] == "Ann B"
