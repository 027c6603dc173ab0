"""Hostile bodies and queries meet a bounded 422 (contract §4, §5): at most 50 errors, sizes
checked before any other rule, and the event loop stays free for everyone else."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson

from app.errors import MAX_VALIDATION_ERRORS
from plugins.users.models import ROLES_MAX
from tests.integration.conftest import Client, StackFactory, admin_headers, assert_problem, register

USERS = "/api/v1/users"
BODY_LIMIT = 1024**2  # contract §5: 413 above 1 MiB
SMALL = 16 * 1024  # a bounded 422 is a few KB at most


def huge_roles() -> bytes:
    """An 800 KB PATCH whose `roles` is a list of 60,000 bad roles (once 60,001 errors)."""
    body = orjson.dumps({"roles": ["Not A Role"] * 60_000})
    assert 780_000 < len(body) < BODY_LIMIT
    return body


async def admin_and_user(client: Client) -> tuple[dict[str, str], int]:
    user = await register(client, "ann@example.com")
    return await admin_headers(client), int(user["id"])


async def patch_raw(client: Client, user_id: int, body: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], int]:
    resp = await client.patch(f"{USERS}/{user_id}", data=body,
                              headers={**headers, "Content-Type": "application/json"})
    size = len(await resp.read())
    return await assert_problem(resp, 422), size


async def test_an_oversized_list_is_one_error_naming_its_size_rule(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)

    problem, size = await patch_raw(client, user_id, huge_roles(), admin)

    assert problem["errors"] == [{"loc": ["body", "roles"], "msg": f"must have at most {ROLES_MAX} items"}]
    assert size < SMALL


async def test_a_list_of_bad_items_over_the_limit_is_still_one_error(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)

    problem, size = await patch_raw(client, user_id, orjson.dumps({"roles": [7] * 5000}), admin)

    assert problem["errors"] == [{"loc": ["body", "roles"], "msg": f"must have at most {ROLES_MAX} items"}]
    assert size < SMALL


async def test_thousands_of_unknown_keys_give_at_most_fifty_errors_and_say_so(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)
    body = orjson.dumps({f"{n:x}": 0 for n in range(100_000)})  # 100,000 unknown keys in 930 KB
    assert len(body) < BODY_LIMIT

    problem, size = await patch_raw(client, user_id, body, admin)

    assert len(problem["errors"]) == MAX_VALIDATION_ERRORS
    assert all(error["msg"] == "unknown field" for error in problem["errors"])
    assert f"first {MAX_VALIDATION_ERRORS}" in problem["detail"]
    assert size < SMALL


async def test_unknown_keys_with_colons_in_their_values_are_still_fifty_errors_and_no_repeat(
    stack: StackFactory,
) -> None:
    # Colons inside strings make the cheap count of members too high; the exact one (outside
    # strings) must find no repeat, or this would be one error about a repeat instead.
    client = await stack()
    admin, user_id = await admin_and_user(client)
    body = orjson.dumps({f"{n:x}": "12:00" for n in range(60_000)})
    assert len(body) < BODY_LIMIT

    problem, size = await patch_raw(client, user_id, body, admin)

    assert len(problem["errors"]) == MAX_VALIDATION_ERRORS
    assert all(error["msg"] == "unknown field" for error in problem["errors"])
    assert size < SMALL


async def test_a_body_of_300_000_empty_objects_is_413(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)
    body = b'{"roles": [' + b",".join([b"{}"] * 300_000) + b"]}"
    assert len(body) < BODY_LIMIT

    resp = await client.patch(f"{USERS}/{user_id}", data=body, headers={**admin, "Content-Type": "application/json"})

    problem = await assert_problem(resp, 413)
    assert "JSON objects and arrays" in problem["detail"]


async def test_a_form_over_aiohttps_field_limit_is_413_and_says_so(stack: StackFactory) -> None:
    client = await stack()
    form = "&".join(f"f{n}=x" for n in range(1001))

    resp = await client.post("/api/v1/auth/login", data=form,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})

    problem = await assert_problem(resp, 413)
    assert problem["detail"] == "The form has more than 1000 fields."


async def test_a_compressed_form_is_415_asking_for_none(stack: StackFactory) -> None:
    # Bodies are decoded by the JSON reader; aiohttp's form reader would see the gzip bytes.
    client = await stack()
    form = gzip.compress(b"username=ann@example.com&password=whatever-it-is")

    resp = await client.post("/api/v1/auth/login", data=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})

    await assert_problem(resp, 415)
    assert resp.headers["Accept-Encoding"] == "identity"


async def test_many_bad_fields_within_the_limits_are_listed_up_to_fifty(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)
    # 64 bad roles (within maxItems) plus a bad email: 65 errors, 50 listed.
    body = orjson.dumps({"roles": ["Not A Role"] * ROLES_MAX, "email": "nope"})

    problem, _ = await patch_raw(client, user_id, body, admin)

    assert len(problem["errors"]) == MAX_VALIDATION_ERRORS
    assert f"first {MAX_VALIDATION_ERRORS}" in problem["detail"]


async def test_a_few_errors_are_all_listed_without_a_note(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)

    problem, _ = await patch_raw(client, user_id, orjson.dumps({"email": "nope", "nickname": "a"}), admin)

    assert {tuple(error["loc"]) for error in problem["errors"]} == {("body", "email"), ("body", "nickname")}
    assert "first" not in problem["detail"]


async def test_a_query_with_thousands_of_unknown_parameters_is_bounded(stack: StackFactory) -> None:
    client = await stack()
    admin, _ = await admin_and_user(client)
    query = "&".join(f"p{n}=1" for n in range(1000))

    resp = await client.get(f"{USERS}?{query}", headers=admin)
    problem = await assert_problem(resp, 422)

    assert len(problem["errors"]) == MAX_VALIDATION_ERRORS
    assert problem["errors"][0]["loc"][0] == "query"


async def test_health_is_answered_while_hostile_bodies_are_validated(stack: StackFactory) -> None:
    client = await stack()
    admin, user_id = await admin_and_user(client)
    body = huge_roles()

    patches = [asyncio.ensure_future(patch_raw(client, user_id, body, admin)) for _ in range(4)]
    health = await client.get("/healthz")

    assert health.status == 200
    assert await health.json() == {"status": "ok"}
    for problem, size in await asyncio.gather(*patches):
        assert len(problem["errors"]) == 1
        assert size < SMALL
