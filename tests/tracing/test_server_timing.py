"""`SERVER_TIMING=1` (contract §15): a `Server-Timing` header with each step's own time,
independent of tracing; without the variable, no header."""

from __future__ import annotations

import re
import time

import pytest

from app.server_timing import header_value, server_timing_requested
from tests.integration.conftest import Client, StackFactory, bearer, login, register

PASSWORD = "correct-horse-1"
ENTRY = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]+);dur=(\d+\.\d{2})$")


def entries(header: str) -> list[tuple[str, float]]:
    """The header's metrics, each checked against the W3C Server-Timing syntax."""
    found = []
    for item in header.split(", "):
        match = ENTRY.match(item)
        assert match, f"not a server-timing metric: {item!r}"
        found.append((match.group(1), float(match.group(2))))
    return found


async def ann(client: Client) -> tuple[int, dict[str, str]]:
    user = await register(client, "ann@example.com", PASSWORD)
    return user["id"], bearer(await login(client, "ann@example.com", PASSWORD))


async def test_each_step_has_its_own_time_in_the_header(stack: StackFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_TIMING", "1")
    client = await stack()
    user_id, headers = await ann(client)

    started = time.perf_counter()
    miss = await client.get(f"/api/v1/users/{user_id}", headers=headers)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert miss.status == 200
    assert miss.headers["X-Cache"] == "MISS"
    timings = entries(miss.headers["Server-Timing"])
    # get_user is auth, cache, data-fetch; the rules gate stands after the last guard.
    assert [name for name, _ in timings] == ["step-1-auth", "rules", "step-2-cache", "step-3-data-fetch"]
    # Own times, not nested ones: together they fit in the time the whole request took.
    assert sum(dur for _, dur in timings) <= elapsed_ms

    hit = await client.get(f"/api/v1/users/{user_id}", headers=headers)
    assert hit.headers["X-Cache"] == "HIT"
    assert [name for name, _ in entries(hit.headers["Server-Timing"])] == ["step-1-auth", "rules", "step-2-cache"]


async def test_a_refused_request_times_the_steps_that_ran(stack: StackFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_TIMING", "1")
    client = await stack()
    refused = await client.get("/api/v1/users/1")
    assert refused.status == 401
    assert [name for name, _ in entries(refused.headers["Server-Timing"])] == ["step-1-auth"]


async def test_without_server_timing_there_is_no_header(stack: StackFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVER_TIMING", raising=False)
    client = await stack()
    user_id, headers = await ann(client)
    for _ in range(2):  # a miss and a hit
        resp = await client.get(f"/api/v1/users/{user_id}", headers=headers)
        assert resp.status == 200
        assert "Server-Timing" not in resp.headers
    assert "Server-Timing" not in (await client.get("/api/v1/users/1")).headers


def test_the_variable_takes_the_usual_spellings() -> None:
    assert all(server_timing_requested({"SERVER_TIMING": v}) for v in ("1", "true", "YES", "on"))
    assert not any(server_timing_requested({"SERVER_TIMING": v}) for v in ("", "0", "false", "no"))
    assert not server_timing_requested({})


def test_a_step_s_own_time_excludes_the_steps_inside_it() -> None:
    # (position, name, seconds including the steps after it), recorded innermost first
    timings = [(2, "c", 0.001), (1, "b", 0.004), (0, "a", 0.010)]
    assert header_value(timings) == "a;dur=6.00, b;dur=3.00, c;dur=1.00"
    # A step that ran the rest twice (a retry) spent both runs inside it.
    retried = [(1, "b", 0.002), (1, "b", 0.003), (0, "a", 0.006)]
    assert header_value(retried) == "a;dur=1.00, b;dur=5.00"
