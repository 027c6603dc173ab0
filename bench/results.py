"""What a run reports: the table rows, the memory readings, the targets and their PASS/MISS."""

from __future__ import annotations

from typing import Any, Final

import attrs

from bench import wrk
from bench.hash_waits import BOUND_TEXT, HashWaits

TURNSTILE: Final = "turnstile"

# Targets (docs/performance.md). Ratios are Turnstile's req/s over the other row's, same run.
CACHED_VS_BASELINE: Final = 1.5
CACHED_VS_CEILING: Final = 0.5
MAX_CACHED_P99_MS: Final = 20.0
UNCACHED_VS_BASELINE: Final = 0.9
UNCACHED_P99_VS_BASELINE: Final = 1.5
PATCH_VS_BASELINE: Final = 0.8
STORM_P99_FACTOR: Final = 2.0
MAX_RSS_GROWTH_MIB: Final = 10.0


@attrs.frozen
class Row:
    """One measured server in one scenario.

    key: short name of what was measured (``turnstile``, ``baseline``, ``ceiling``, …).
    target: what the table calls it, saying what the server does.
    ratio: Turnstile's req/s ÷ this row's, in the same scenario and run; None on Turnstile's rows.
    note: printed where no ratio is (``no baseline``).
    refusals_expected: 429/503 with Retry-After are an answer here (the argon2 scenarios: create,
        login, the storm's logins), not a failure.
    """

    scenario: str
    key: str
    target: str
    result: wrk.Result
    ratio: float | None = None
    note: str = ""
    refusals_expected: bool = False

    @property
    def failed(self) -> bool:
        """A socket error, a non-2xx answer other than an expected refusal, or a refusal that
        does not say when to retry."""
        r = self.result
        refused = r.refused if self.refusals_expected else 0
        return r.socket_errors > 0 or r.non_2xx > refused or r.retry_after < refused

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {"scenario": self.scenario, "key": self.key, "target": self.target, "rps": r.rps,
                "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "max_ms": r.max_ms, "requests": r.requests,
                "statuses": r.statuses, "non_2xx": r.non_2xx, "retry_after": r.retry_after,
                "socket_errors": r.socket_errors, "ratio": self.ratio, "note": self.note, "failed": self.failed}


@attrs.frozen
class Check:
    text: str
    ok: bool
    required: bool = False  # a MISS of a required check fails the run (speed is only reported)


def find(rows: list[Row], scenario: str, key: str) -> Row:
    for row in rows:
        if row.scenario == scenario and row.key == key:
            return row
    msg = f"no row {scenario!r} / {key!r}"
    raise KeyError(msg)


def _ratio_check(rows: list[Row], scenario: str, key: str, least: float, what: str) -> Check:
    ratio = find(rows, scenario, key).ratio or 0.0
    return Check(f"{scenario} >= {least:g}x {what} req/s (got {ratio:.2f}x)", ratio >= least)


def targets(rows: list[Row], memory: dict[str, Any], waits: HashWaits) -> list[Check]:
    cached = find(rows, "cached GET", TURNSTILE).result
    uncached = find(rows, "uncached GET", TURNSTILE).result
    uncached_base = find(rows, "uncached GET", "baseline").result
    alone = find(rows, "login storm", "alone").result
    during = find(rows, "login storm", "during").result
    p99_ratio = uncached.p99_ms / uncached_base.p99_ms if uncached_base.p99_ms else 0.0
    storm = during.p99_ms / alone.p99_ms if alone.p99_ms else 0.0
    rss = memory["rss"]
    return [
        _ratio_check(rows, "cached GET", "baseline", CACHED_VS_BASELINE, "the JWT baseline's"),
        _ratio_check(rows, "cached GET", "ceiling", CACHED_VS_CEILING, "the ceiling's"),
        Check(f"cached GET p99 <= {MAX_CACHED_P99_MS:g} ms (got {cached.p99_ms:.1f} ms)",
              cached.p99_ms <= MAX_CACHED_P99_MS),
        _ratio_check(rows, "uncached GET", "baseline", UNCACHED_VS_BASELINE, "the baseline's"),
        Check(f"uncached GET p99 <= {UNCACHED_P99_VS_BASELINE:g}x the baseline's p99 "
              f"(got {uncached.p99_ms:.1f} ms against {uncached_base.p99_ms:.1f} ms: {p99_ratio:.2f}x)",
              p99_ratio <= UNCACHED_P99_VS_BASELINE),
        _ratio_check(rows, "PATCH", "baseline", PATCH_VS_BASELINE, "the baseline's"),
        Check(f"cached GET p99 beside the login storm <= {STORM_P99_FACTOR:g}x its p99 alone "
              f"(got {during.p99_ms:.1f} ms against {alone.p99_ms:.1f} ms: {storm:.2f}x)",
              storm <= STORM_P99_FACTOR),
        # No wait at all would prove nothing: the storm must have hashed.
        Check(f"no login of the storm waited past the hashing queue's bound ({BOUND_TEXT}) "
              f"(got {waits.over_bound:,} of {waits.waits:,} waits over)",
              waits.waits > 0 and waits.over_bound == 0),
        Check(f"RSS growth < {MAX_RSS_GROWTH_MIB:g} MiB over {rss['requests']:,.0f} mixed requests "
              f"(got {rss['growth_mib']:+.1f} MiB)", rss["growth_mib"] < MAX_RSS_GROWTH_MIB),
        Check("no failed request: no socket error, no non-2xx but 429/503 with Retry-After to create and login",
              not any(row.failed for row in rows), required=True),
    ]


def table(rows: list[Row]) -> str:
    header = ("scenario", "target", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "sock err",
              "turnstile ÷ this")
    lines = [header]
    for row in rows:
        r = row.result
        compared = row.note if row.ratio is None else f"{row.ratio:.2f}"
        lines.append((row.scenario, row.target, f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                      f"{r.max_ms:,.0f}", str(r.non_2xx), str(r.socket_errors), compared))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def tracing_summary(rows: list[Row], scenario: str) -> str:
    """What turning tracing on costs the cached read; off installs nothing, so off is the base."""
    off = find(rows, scenario, TURNSTILE).result.rps
    on = [find(rows, scenario, key) for key in ("none sampled", "all sampled")]
    parts = [f"{row.target}: {row.result.rps / off:.2f}x of off's req/s" for row in on] if off \
        else ["no request answered with tracing off"]
    return f"Tracing (cached GET): off installs nothing (the turnstile row); {'; '.join(parts)}."


def patch_summary(rows: list[Row]) -> str:
    """PATCH against the baseline (the target) and against the baseline that also consumes its
    own events as Turnstile's default subscriptions do (the same broker work)."""
    plain = find(rows, "PATCH", "baseline")
    consuming = find(rows, "PATCH", "consuming")
    cost = 1 - consuming.result.rps / plain.result.rps if plain.result.rps else 0.0
    return (f"PATCH: {plain.ratio or 0.0:.2f}x the baseline's req/s (the target: {PATCH_VS_BASELINE:g}x); "
            f"{consuming.ratio or 0.0:.2f}x the baseline that also consumes its own events from a shared "
            f"quorum queue and a queue of its own, as Turnstile's default subscriptions do (consuming them "
            f"costs that baseline {cost:.0%} of its req/s).")


def storm_summary(rows: list[Row], waits: HashWaits) -> str:
    alone = find(rows, "login storm", "alone").result
    during = find(rows, "login storm", "during").result
    logins = find(rows, "login storm", "logins").result
    statuses = ", ".join(f"{n:,} x {status}" for status, n in sorted(logins.statuses.items())) or "none"
    factor = during.p99_ms / alone.p99_ms if alone.p99_ms else 0.0
    return (f"Login storm: cached GET p99 {alone.p99_ms:.1f} ms alone, {during.p99_ms:.1f} ms beside the logins "
            f"({factor:.2f}x). Logins answered: {statuses} ({logins.retry_after:,} of the 429/503 with "
            f"Retry-After); the slowest took {logins.max_ms:,.0f} ms. Hashes waited for a thread "
            f"{waits.waits:,} times, every wait at most {waits.longest_at_most_s:g} s (the bound: {BOUND_TEXT}); "
            f"the rest of a login is its hash, at the lowest CPU priority.")


def memory_summary(memory: dict[str, Any]) -> str:
    rss, phase = memory["rss"], memory["workers"]
    lines = [f"Turnstile RSS: {rss['before_mib']:.1f} MiB before, {rss['after_mib']:.1f} MiB after "
             f"{rss['requests']:,.0f} mixed requests (cached, uncached, PATCH): {rss['growth_mib']:+.1f} MiB"]
    lines.append(f"--workers {len(phase['workers'])}, after {phase['requests']:,} mixed requests "
                 f"(supervisor {phase['supervisor_mib']:.1f} MiB):")
    lines.extend(f"  worker {w['pid']}: {w['start_mib']:.1f} MiB at start, {w['rss_mib']:.1f} MiB after "
                 f"({w['cpu_s']:.1f} s of CPU)" for w in phase["workers"])
    return "\n".join(lines)
