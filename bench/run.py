"""The benchmark: every scenario against Turnstile and, where one can exist, against a
hand-written baseline, in one run, printed as one table. See docs/performance.md.

    bash bench/run.sh [--duration 10] [--warmup 3] [--rounds 2] [--quick] [--json FILE] [--profile DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from bench import memory, profile, results, scenarios, wrk
from bench.ids import MAX_UNCACHED_RPS, FreshIds
from bench.options import FULL, QUICK, Options
from bench.results import TURNSTILE, Row
from bench.scenarios import LOGIN_EMAIL, LOGIN_PASSWORD, PATCH_IDS
from bench.stack import ADMIN_EMAIL, ADMIN_PASSWORD, call, running_stack


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Say on stderr what ran and how long it took: a full run lasts minutes."""
    started = time.monotonic()
    yield
    print(f"bench: {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def run_all(opts: Options, workdir: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        with phase("start-up"):
            stack = cleanup.enter_context(running_stack(workdir, opts.seed))
            admin_token = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD)
            admin_id = int(call(f"{stack.turnstile.url}/api/v1/auth/me", token=admin_token)["id"])
            call(f"{stack.turnstile.url}/api/v1/users", "POST",
                 {"email": LOGIN_EMAIL, "password": LOGIN_PASSWORD}, admin_token)
            # Prime the cached reads: Turnstile's cache, the baseline's, and the ceiling's dict.
            for url in (f"{stack.turnstile.url}/api/v1", f"{stack.baseline.url}/api/v1",
                        f"{stack.baseline.url}/reference/dict"):
                call(f"{url}/users/{admin_id}", token=admin_token)
        ids = FreshIds(stack.seeded - PATCH_IDS, stack.forget_users)
        with phase("cached GET"):
            rows = scenarios.cached_rows(stack, opts, admin_id, admin_token)
        with phase("tracing"):
            rows += scenarios.tracing_rows(stack, opts, admin_id, admin_token)
        with phase("uncached GET"):
            rows += scenarios.uncached_rows(stack, opts, ids, admin_token)
        with phase("PATCH"):
            rows += scenarios.patch_rows(stack, opts, admin_token)
        with phase("create and login"):
            rows += scenarios.argon2_rows(stack, opts, admin_token)
        with phase("login storm"):
            storm, waits = scenarios.storm_rows(stack, opts, admin_id, admin_token)
            rows += storm
        load = memory.MixedLoad(stack, ids, admin_id, admin_token)
        with phase("RSS growth"):
            mixed, rss = memory.rss_growth(load, opts, _mixed_rps(rows))
        with phase(f"--workers {opts.workers}"):
            workers, phase_memory = memory.per_worker(load, opts)
    return {"rows": [*rows, mixed, workers], "memory": {"rss": rss, "workers": phase_memory},
            "hash_waits": waits}


def _mixed_rps(rows: list[Row]) -> float:
    return memory.mixed_rps({s: results.find(rows, s, TURNSTILE).result.rps for s in memory.MIX})


def _seed_needed(opts: Options) -> int:
    # Fresh ids for the longest single run (ids start over between runs; see FreshIds).
    mixed_chunk = min(memory.CHUNK_S, opts.rss_requests / memory.MIN_RPS) * memory.MIX["uncached GET"]
    longest = max(opts.warmup, opts.duration, opts.workers_seconds, mixed_chunk)
    return PATCH_IDS + math.ceil(longest * MAX_UNCACHED_RPS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny durations (what the test suite runs)")
    parser.add_argument("--duration", type=float, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each measured run")
    parser.add_argument("--rounds", type=int, help="alternating rounds of Turnstile and its baselines")
    parser.add_argument("--rss-requests", type=int, help="mixed requests between the two RSS readings")
    parser.add_argument("--workers", type=int, help="worker processes of the memory phase (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    parser.add_argument("--profile", type=Path, help="py-spy the first cached and uncached rounds of "
                        "Turnstile and the baseline into this folder")
    args = parser.parse_args(argv)
    if not wrk.installed():
        parser.error("wrk and taskset are needed: apt-get install -y wrk util-linux")
    if args.profile is not None and not profile.installed():
        parser.error(f"--profile needs py-spy on PATH or beside {sys.executable} (install it in a virtualenv "
                     "of its own and put that on PATH: the tests refuse packages .venv does not pin)")
    base = QUICK if args.quick else FULL
    changes = {k: v for k, v in vars(args).items() if k in attrs.fields_dict(Options) and v is not None}
    opts = attrs.evolve(base, **changes)
    opts = attrs.evolve(opts, seed=max(opts.seed, _seed_needed(opts)))
    if opts.profile is not None:
        opts.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="turnstile-bench-") as tmp:
        try:
            outcome = run_all(opts, Path(tmp))
        finally:
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, args.logs / log.name)
    rows, mem, waits = outcome["rows"], outcome["memory"], outcome["hash_waits"]
    checks = results.targets(rows, mem, waits)
    print(results.table(rows))
    print("\n" + results.tracing_summary(rows, scenarios.TRACING))
    print("\n" + results.patch_summary(rows))
    print("\n" + results.storm_summary(rows, waits))
    print("\n" + results.memory_summary(mem))
    print("\nTargets:")
    for check in checks:
        print(f"  [{'PASS' if check.ok else 'MISS'}] {check.text}")
    if args.json:
        args.json.write_text(json.dumps({
            "options": attrs.asdict(opts, value_serializer=lambda _i, _a, v: str(v) if isinstance(v, Path) else v),
            "rows": [row.as_json() for row in rows],
            "memory": mem,
            "hash_waits": waits.as_json(),
            "targets": [{"target": c.text, "ok": c.ok, "required": c.required} for c in checks],
        }, indent=2))
    # Speed is reported, not enforced; a failed request is a broken run.
    return 0 if all(c.ok for c in checks if c.required) else 1
