"""Memory: Turnstile's RSS growth over many mixed requests, and RSS per worker with `--workers N`."""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from bench import wrk
from bench.ids import FreshIds
from bench.options import Options
from bench.results import TURNSTILE, Row
from bench.scenarios import PATCH_IDS
from bench.server import children, cpu_seconds, rss_kib
from bench.stack import Stack

# mixed.lua's shares of cached reads, uncached reads and PATCHes.
MIX: Final = {"cached GET": 0.8, "uncached GET": 0.1, "PATCH": 0.1}
# The RSS phase runs wrk in pieces of at most this long, each re-estimating the rate from
# the last (never below MIN_RPS).
CHUNK_S: Final = 60
MIN_RPS: Final = 100.0


@attrs.frozen
class MixedLoad:
    """mixed.lua's arguments: cached reads of `user_id`, uncached reads of fresh ids and
    PATCHes (see MIX), as the user of `token`."""

    stack: Stack
    ids: FreshIds
    user_id: int
    token: str

    def run(self, url: str, seconds: float) -> wrk.Result:
        first = self.ids.take(seconds, MIX["uncached GET"])
        args = [str(self.user_id), str(first), str(self.stack.seeded - PATCH_IDS + 1), str(PATCH_IDS), self.token]
        return self.ids.used(wrk.run(url, "mixed", args, seconds))


def merged(results: list[wrk.Result]) -> wrk.Result:
    """Several runs as one: counts add up; latencies are the worst run's (percentiles do not add)."""
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return wrk.Result(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        statuses=statuses,
        socket_errors=sum(r.socket_errors for r in results),
        last_ids=tuple(i for r in results for i in r.last_ids),
        retry_after=sum(r.retry_after for r in results),
    )


def mixed_rps(rates: dict[str, float]) -> float:
    """The mixed load's expected rate from each scenario's own: the time per request adds up."""
    return 1 / sum(share / max(rates[scenario], 1.0) for scenario, share in MIX.items())


def rss_growth(load: MixedLoad, opts: Options, rps: float) -> tuple[Row, dict[str, float]]:
    """VmRSS of Turnstile before and after at least `rss_requests` mixed requests; `rps`
    guesses how long that takes."""
    server = load.stack.turnstile
    server.settle()
    before = server.rss_kib()
    runs: list[wrk.Result] = []
    done = 0
    while done < opts.rss_requests:
        seconds = min(CHUNK_S, math.ceil((opts.rss_requests - done) / max(rps, MIN_RPS) * 1.05))
        runs.append(load.run(server.url, seconds))
        done += runs[-1].requests
        rps = runs[-1].rps
    server.settle()
    after = server.rss_kib()
    row = Row("mixed (memory)", TURNSTILE, TURNSTILE, merged(runs), note="no baseline")
    return row, {"requests": done, "before_mib": before / 1024, "after_mib": after / 1024,
                 "growth_mib": (after - before) / 1024}


def per_worker(load: MixedLoad, opts: Options) -> tuple[Row, dict[str, Any]]:
    """Turnstile started again with `--workers N`: each worker's VmRSS at start and after a
    short mixed load, and the CPU each spent on it (SO_REUSEPORT spreads the connections)."""
    server = load.stack.start_workers(opts.workers)
    try:
        pids = children(server.pid)
        if len(pids) != opts.workers:
            msg = f"--workers {opts.workers} started {len(pids)} worker processes"
            raise RuntimeError(msg)
        start = {pid: (rss_kib(pid), cpu_seconds(pid)) for pid in pids}
        result = load.run(server.url, opts.workers_seconds)
        workers = [{"pid": pid, "start_mib": start[pid][0] / 1024, "rss_mib": rss_kib(pid) / 1024,
                    "cpu_s": cpu_seconds(pid) - start[pid][1]} for pid in pids]
        supervisor = rss_kib(server.pid) / 1024
    finally:
        server.stop()
    row = Row(f"mixed, --workers {opts.workers}", "workers", f"turnstile, {opts.workers} workers", result,
              note="no baseline")
    return row, {"requests": result.requests, "supervisor_mib": supervisor, "workers": workers}
