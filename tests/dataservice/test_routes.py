from __future__ import annotations

import asyncio
import gzip
import io
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse

from tests.content_coding import gzip_bomb
from tests.dataservice.conftest import Client

PROBLEM = "application/problem+json"


def user_body(email: str = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    """A valid POST body, as Turnstile sends it."""
    return {
        "email": email,
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "full_name": "Ada Lovelace",
        "roles": ["user"],
        "is_active": True,
        **overrides,
    }


async def create(client: Client, email: str = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/users/", json=user_body(email, **overrides))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def problem(resp: ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body: dict[str, Any] = await resp.json(content_type=PROBLEM)
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    assert "Traceback" not in await resp.text()
    return body


def parse_time(value: str) -> datetime:
    assert value.endswith(("Z", "+00:00"))
    return datetime.fromisoformat(value)


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_create_returns_the_stored_record(client: Client) -> None:
    resp = await client.post("/api/v1/users/", json=user_body())
    assert resp.status == 201
    record = await resp.json()
    assert isinstance(record["id"], int)
    assert resp.headers["Location"] == f"/api/v1/users/{record['id']}"
    assert {k: record[k] for k in user_body()} == user_body()
    assert parse_time(record["created_at"]) == parse_time(record["updated_at"])


async def test_create_accepts_the_path_without_slash_and_defaults(client: Client) -> None:
    resp = await client.post("/api/v1/users", json={"email": "bob@example.com", "password_hash": "h"})
    assert resp.status == 201
    record = await resp.json()
    assert (record["full_name"], record["roles"], record["is_active"]) == (None, ["user"], True)


async def test_create_with_taken_email_is_409(client: Client) -> None:
    await create(client)
    body = await problem(await client.post("/api/v1/users/", json=user_body()), 409)
    assert "email" in body["detail"]


async def test_get_returns_the_record_or_404(client: Client) -> None:
    created = await create(client)
    resp = await client.get(f"/api/v1/users/{created['id']}")
    assert resp.status == 200
    assert await resp.json() == created
    await problem(await client.get("/api/v1/users/9999"), 404)


@pytest.mark.parametrize("user_id", ["abc", "1.5", "1e3", "%20"])
async def test_non_integer_id_is_a_problem(client: Client, user_id: str) -> None:
    await problem(await client.get(f"/api/v1/users/{user_id}"), 422)


@pytest.mark.parametrize(
    "user_id", ["0", "-3", str(2**63), "99999999999999999999", "9" * 26, "-" + "9" * 26, "1" * 5000]
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_integer_id_out_of_range_is_404(client: Client, method: str, user_id: str) -> None:
    body = {"full_name": "X"} if method == "PATCH" else None
    await problem(await client.request(method, f"/api/v1/users/{user_id}", json=body), 404)


async def test_list_filters_pages_and_counts(client: Client) -> None:
    ids = [(await create(client, f"u{i}@example.com"))["id"] for i in range(5)]

    resp = await client.get("/api/v1/users")
    body = await resp.json()
    assert resp.status == 200
    assert [u["id"] for u in body["items"]] == ids
    assert body["total"] == 5

    body = await (await client.get("/api/v1/users/", params={"limit": 2, "offset": 1})).json()
    assert [u["id"] for u in body["items"]] == ids[1:3]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)

    body = await (await client.get("/api/v1/users", params={"email": "u3@example.com"})).json()
    assert [u["id"] for u in body["items"]] == [ids[3]]
    assert body["total"] == 1


@pytest.mark.parametrize("email", ["nobody@example.com", "", "U3@EXAMPLE.COM"])
async def test_list_email_filter_is_exact(client: Client, email: str) -> None:
    await create(client, "u3@example.com")
    body = await (await client.get("/api/v1/users", params={"email": email})).json()
    assert body == {"items": [], "total": 0, "limit": 50, "offset": 0}


@pytest.mark.parametrize("query", ["limit=501", "limit=-1", "limit=x", "offset=-1", "offset=1.5"])
async def test_list_rejects_bad_paging(client: Client, query: str) -> None:
    await problem(await client.get(f"/api/v1/users?{query}"), 422)


async def test_patch_changes_fields_and_updated_at(client: Client) -> None:
    created = await create(client)
    changes = {"email": "ada@lovelace.org", "full_name": None, "roles": ["admin"], "is_active": False}
    resp = await client.patch(f"/api/v1/users/{created['id']}", json=changes)
    assert resp.status == 200
    patched = await resp.json()
    assert {k: patched[k] for k in changes} == changes
    assert patched["password_hash"] == created["password_hash"]
    assert patched["created_at"] == created["created_at"]
    assert parse_time(patched["updated_at"]) > parse_time(created["updated_at"])
    assert await (await client.get(f"/api/v1/users/{created['id']}")).json() == patched


async def test_patch_with_empty_body_changes_nothing(client: Client) -> None:
    created = await create(client)
    resp = await client.patch(f"/api/v1/users/{created['id']}", json={})
    assert resp.status == 200
    assert await resp.json() == created


async def test_patch_missing_user_is_404(client: Client) -> None:
    await problem(await client.patch("/api/v1/users/42", json={"full_name": "x"}), 404)


async def test_patch_taking_anothers_email_is_409(client: Client) -> None:
    await create(client, "a@example.com")
    b = await create(client, "b@example.com")
    await problem(await client.patch(f"/api/v1/users/{b['id']}", json={"email": "a@example.com"}), 409)
    assert (await (await client.get(f"/api/v1/users/{b['id']}")).json())["email"] == "b@example.com"


async def test_delete_then_404_and_id_not_reused(client: Client) -> None:
    created = await create(client)
    resp = await client.delete(f"/api/v1/users/{created['id']}")
    assert resp.status == 204
    await problem(await client.get(f"/api/v1/users/{created['id']}"), 404)
    await problem(await client.delete(f"/api/v1/users/{created['id']}"), 404)
    assert (await create(client))["id"] != created["id"]


@pytest.mark.parametrize("data", [b"{", b"", b"\xff", b"[1, 2]", b'"text"', b"null"])
async def test_malformed_json_is_400(client: Client, data: bytes) -> None:
    resp = await client.post("/api/v1/users/", data=data, headers={"Content-Type": "application/json"})
    await problem(resp, 400)


async def test_a_body_that_does_not_decode_is_400(client: Client) -> None:
    resp = await client.post("/api/v1/users/", data=b"not deflate",
                             headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    await problem(resp, 400)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", 1),
        ("email", ""),
        ("password_hash", None),
        ("full_name", 5),
        ("roles", "admin"),
        ("roles", [1]),
        ("is_active", "false"),
        ("is_active", 1),
        ("id", 7),
        ("created_at", "2024-01-01T00:00:00Z"),
    ],
)
async def test_wrong_types_and_unknown_fields_are_422(client: Client, field: str, value: object) -> None:
    body = await problem(await client.post("/api/v1/users/", json={**user_body(), field: value}), 422)
    assert [e["loc"] for e in body["errors"]] == [["body", field]]


async def test_patch_with_wrong_types_is_422(client: Client) -> None:
    created = await create(client)
    resp = await client.patch(f"/api/v1/users/{created['id']}", json={"is_active": "no", "bogus": 1})
    body = await problem(resp, 422)
    assert sorted(e["loc"][1] for e in body["errors"]) == ["bogus", "is_active"]


async def test_missing_required_fields_are_422(client: Client) -> None:
    body = await problem(await client.post("/api/v1/users/", json={"full_name": "x"}), 422)
    assert sorted(e["loc"][1] for e in body["errors"]) == ["email", "password_hash"]


async def test_unknown_route_and_method_are_problems(client: Client) -> None:
    await problem(await client.get("/nowhere"), 404)
    resp = await client.put("/api/v1/users/1", json={})
    await problem(resp, 405)
    assert "PATCH" in resp.headers["Allow"]


async def test_request_id_is_echoed_or_made(client: Client) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await client.get("/api/v1/users/9", headers={"X-Request-ID": "bad id!"})
    made = resp.headers["X-Request-ID"]
    assert made != "bad id!"
    assert (await resp.json(content_type=PROBLEM))["request_id"] == made


async def test_each_request_is_logged_with_its_id(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="turnstile.dataservice")
    await client.get("/api/v1/users/5", headers={"X-Request-ID": "req-42"})
    [record] = [r for r in caplog.records if r.name == "turnstile.dataservice"]
    assert record.request_id == "req-42"  # type: ignore[attr-defined]
    assert "GET /api/v1/users/5 -> 404" in record.getMessage()
    assert "req-42" in record.getMessage()


async def test_many_concurrent_creates_get_distinct_ids(client: Client) -> None:
    created = await asyncio.gather(*(create(client, f"c{i}@example.com") for i in range(30)))
    assert len({u["id"] for u in created}) == 30
    body = await (await client.get("/api/v1/users", params={"limit": 500})).json()
    assert body["total"] == 30


async def test_full_name_may_be_empty_or_null(client: Client) -> None:
    assert (await create(client, "a@example.com", full_name=""))["full_name"] == ""
    assert (await create(client, "b@example.com", full_name=None))["full_name"] is None


async def test_a_gzip_body_is_read_and_one_that_inflates_past_the_limit_is_413(
    client: Client, inflated_by_aiohttp: list[int],
) -> None:
    gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post("/api/v1/users/", data=gzip.compress(orjson.dumps(user_body())), headers=gzipped)
    assert resp.status == 201, await resp.text()

    await problem(await client.post("/api/v1/users/", data=gzip_bomb(64), headers=gzipped), 413)
    assert inflated_by_aiohttp == []


async def test_body_over_one_mib_is_413(client: Client) -> None:
    huge = io.BytesIO(orjson.dumps(user_body(full_name="x" * (1024 * 1024))))
    await problem(await client.post("/api/v1/users/", data=huge), 413)


async def test_records_carry_no_revocation_until_one_is_recorded(client: Client) -> None:
    created = await create(client)
    assert created["sessions_revoked_at"] is None


async def test_a_revocation_is_kept_in_utc_and_leaves_updated_at_alone(client: Client) -> None:
    created = await create(client)
    resp = await client.patch(
        f"/api/v1/users/{created['id']}", json={"sessions_revoked_at": "2026-11-30T13:00:00.5+01:00"}
    )
    assert resp.status == 200
    patched = await resp.json()
    assert patched["sessions_revoked_at"] == "2026-11-30T12:00:00.500000Z"
    assert patched["updated_at"] == created["updated_at"]  # not part of the public user


async def test_a_revocation_only_moves_forward(client: Client) -> None:
    created = await create(client)
    path = f"/api/v1/users/{created['id']}"
    await client.patch(path, json={"sessions_revoked_at": "2026-11-30T12:00:00Z"})
    earlier = await (await client.patch(path, json={"sessions_revoked_at": "2026-11-30T11:00:00Z"})).json()
    assert earlier["sessions_revoked_at"] == "2026-11-30T12:00:00.000000Z"  # a late one revives nothing
    later = await (await client.patch(path, json={"sessions_revoked_at": "2026-11-30T12:00:01Z"})).json()
    assert later["sessions_revoked_at"] == "2026-11-30T12:00:01.000000Z"


@pytest.mark.parametrize("value", ["yesterday", "2026-11-30T12:00:00", 1764504000, None])
async def test_a_revocation_must_be_an_rfc3339_time_with_a_zone(client: Client, value: object) -> None:
    created = await create(client)
    resp = await client.patch(f"/api/v1/users/{created['id']}", json={"sessions_revoked_at": value})
    body = await problem(resp, 422)
    assert body["errors"] == [{"loc": ["body", "sessions_revoked_at"], "msg": (
        "must be an RFC 3339 date-time with a time zone")}]


async def test_a_new_user_cannot_come_with_a_revocation(client: Client) -> None:
    resp = await client.post("/api/v1/users/", json=user_body(sessions_revoked_at="2026-11-30T12:00:00Z"))
    body = await problem(resp, 422)
    assert body["errors"] == [{"loc": ["body", "sessions_revoked_at"], "msg": "unknown field"}]
