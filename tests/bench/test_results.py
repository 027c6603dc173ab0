"""What makes a benchmark run fail, and what its table and targets say (no server needed)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from bench import wrk
from bench.hash_waits import BOUND_S, BOUND_TEXT, HashWaits, between
from bench.results import Row, find, patch_summary, table, targets


def result(statuses: dict[str, int], *, retry_after: int = 0, socket_errors: int = 0, rps: float = 100.0,
           p99_ms: float = 10.0) -> wrk.Result:
    return wrk.Result(requests=round(rps * 10), seconds=10.0, p50_ms=p99_ms / 2, p99_ms=p99_ms, max_ms=p99_ms * 2,
                      statuses=statuses, socket_errors=socket_errors, last_ids=(), retry_after=retry_after)


@pytest.mark.parametrize(("statuses", "retry_after", "refusals_expected", "failed"), [
    ({"200": 10}, 0, False, False),
    ({"200": 10, "500": 1}, 0, False, True),
    ({"200": 10, "429": 2}, 2, False, True),  # a refusal where none is expected
    ({"200": 10, "429": 2, "503": 1}, 3, True, False),  # the storm: refused, saying when to retry
    ({"200": 10, "503": 2}, 1, True, True),  # one refusal without Retry-After
    ({"200": 10, "429": 1, "500": 1}, 1, True, True),  # a 500 is never expected
])
def test_only_refusals_that_say_when_to_retry_are_expected_and_only_where_argon2_runs(
    statuses: dict[str, int], retry_after: int, refusals_expected: bool, failed: bool
) -> None:
    row = Row("login storm", "logins", "logins", result(statuses, retry_after=retry_after),
              refusals_expected=refusals_expected)
    assert row.failed is failed


def test_a_socket_error_fails_any_row() -> None:
    assert Row("cached GET", "turnstile", "turnstile", result({"200": 5}, socket_errors=1)).failed


def rows() -> list[Row]:
    ok = result({"200": 1000})
    return [
        Row("cached GET", "turnstile", "turnstile", attrs.evolve(ok, requests=3000)),
        Row("cached GET", "baseline", "baseline: JWT verify + Redis GET", ok, ratio=3.0),
        Row("cached GET", "ceiling", "ceiling: process dict, no auth", ok, ratio=0.4),
        Row("uncached GET", "turnstile", "turnstile", result({"200": 1}, p99_ms=30.0)),
        Row("uncached GET", "baseline", "baseline: miss", result({"200": 1}, p99_ms=10.0), ratio=0.95),
        Row("PATCH", "turnstile", "turnstile", ok),
        Row("PATCH", "baseline", "baseline: PATCH", ok, ratio=0.7),
        Row("create", "turnstile", "turnstile", ok, note="no baseline"),
        Row("login storm", "alone", "cached GET alone", result({"200": 1}, p99_ms=10.0), note="no baseline"),
        Row("login storm", "during", "cached GET beside the logins", result({"200": 1}, p99_ms=15.0),
            note="no baseline"),
        Row("login storm", "logins", "logins", result({"200": 3, "503": 4}, retry_after=4), note="no baseline",
            refusals_expected=True),
    ]


MEMORY: dict[str, Any] = {"rss": {"requests": 200_000, "growth_mib": 0.5}}
WAITS = HashWaits(waits=40, within_bound=40, longest_at_most_s=2.0)


def test_targets_compare_each_scenario_with_its_own_reference() -> None:
    checks = {c.text.split(" (got")[0]: c.ok for c in targets(rows(), MEMORY, WAITS)}
    assert checks == {
        "cached GET >= 1.5x the JWT baseline's req/s": True,
        "cached GET >= 0.5x the ceiling's req/s": False,
        "cached GET p99 <= 20 ms": True,
        "uncached GET >= 0.9x the baseline's req/s": True,
        "uncached GET p99 <= 1.5x the baseline's p99": False,  # 30 ms against 10 ms
        "PATCH >= 0.8x the baseline's req/s": False,
        "cached GET p99 beside the login storm <= 2x its p99 alone": True,
        f"no login of the storm waited past the hashing queue's bound ({BOUND_TEXT})": True,
        "RSS growth < 10 MiB over 200,000 mixed requests": True,
        "no failed request: no socket error, no non-2xx but 429/503 with Retry-After to create and login": True,
    }


def test_only_a_failed_request_is_a_required_check() -> None:
    broken = [*rows(), Row("PATCH", "extra", "x", result({"502": 1}))]
    required = [c for c in targets(broken, MEMORY, WAITS) if c.required]
    assert len(required) == 1
    assert not required[0].ok


def test_every_row_says_what_it_is_compared_with() -> None:
    printed = table(rows()).splitlines()
    assert printed[0].split("|")[-2].strip() == "turnstile ÷ this"
    cells = {(line.split("|")[1].strip(), line.split("|")[2].strip()): line.split("|")[-2].strip()
             for line in printed[2:]}
    assert cells[("cached GET", "ceiling: process dict, no auth")] == "0.40"
    assert cells[("create", "turnstile")] == "no baseline"
    assert cells[("cached GET", "turnstile")] == ""


def test_patch_is_also_set_against_the_baseline_that_consumes_its_events() -> None:
    patch = [
        Row("PATCH", "turnstile", "turnstile", result({"200": 1}, rps=700.0)),
        Row("PATCH", "baseline", "baseline: PATCH", result({"200": 1}, rps=1000.0), ratio=0.7),
        Row("PATCH", "consuming", "reference: consuming", result({"200": 1}, rps=800.0), ratio=0.875),
    ]
    assert patch_summary(patch) == (
        "PATCH: 0.70x the baseline's req/s (the target: 0.8x); 0.88x the baseline that also consumes its own "
        "events from a shared quorum queue and a queue of its own, as Turnstile's default subscriptions do "
        "(consuming them costs that baseline 20% of its req/s).")


def test_find_names_the_missing_row() -> None:
    with pytest.raises(KeyError, match="'PATCH' / 'ceiling'"):
        find(rows(), "PATCH", "ceiling")


@pytest.mark.parametrize(("waits", "ok"), [
    (HashWaits(waits=40, within_bound=39, longest_at_most_s=5.0), False),  # one wait went past the bound
    (HashWaits(waits=0, within_bound=0, longest_at_most_s=0.005), False),  # no hash at all proves nothing
])
def test_the_storm_target_needs_hashes_and_every_wait_within_the_bound(waits: HashWaits, ok: bool) -> None:
    checks = {c.text.split(" (got")[0]: c.ok for c in targets(rows(), MEMORY, waits)}
    assert checks[f"no login of the storm waited past the hashing queue's bound ({BOUND_TEXT})"] is ok


def test_hash_waits_are_the_difference_between_two_scrapes() -> None:
    edges = [0.005, 0.1, 1.0, 2.0, BOUND_S, 5.0, float("inf")]
    before = dict(zip(edges, [3.0, 4, 4, 4, 4, 4, 4], strict=True))  # earlier logins, all quick
    after = dict(zip(edges, [5.0, 10, 20, 29, 30, 31, 31], strict=True))
    waits = between(before, after)
    assert (waits.waits, waits.within_bound, waits.over_bound) == (27, 26, 1)
    assert waits.longest_at_most_s == 5.0
    assert between(after, after) == HashWaits(waits=0, within_bound=0, longest_at_most_s=0.005)
