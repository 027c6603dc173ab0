"""The benchmark keeps working: one run in quick mode (seconds, not a measurement).

Speed is never asserted here; the table must have every row, each saying what it is compared
with, and no request may fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.profile
import bench.run
from tests.services import ROOT

# (scenario, key) of every row a run reports; the rows with a ratio are the comparisons.
ROWS = {
    ("cached GET", "turnstile"), ("cached GET", "baseline"), ("cached GET", "redis"), ("cached GET", "ceiling"),
    ("cached GET, traced", "turnstile"), ("cached GET, traced", "none sampled"), ("cached GET, traced", "all sampled"),
    ("uncached GET", "turnstile"), ("uncached GET", "baseline"),
    ("PATCH", "turnstile"), ("PATCH", "baseline"), ("PATCH", "consuming"),
    ("create", "turnstile"), ("login", "turnstile"),
    ("login storm", "alone"), ("login storm", "during"), ("login storm", "logins"),
    ("mixed (memory)", "turnstile"), ("mixed, --workers 2", "workers"),
}
COMPARED = {(s, k) for s, k in ROWS
            if k in {"baseline", "redis", "ceiling", "consuming", "none sampled", "all sampled"}}
# Turnstile's rows compared with something in the same scenario (tracing off with tracing on).
WITH_BASELINE = {"cached GET", "uncached GET", "PATCH", "cached GET, traced"}
TARGETS = 10


def _need(tool: str, install: str) -> None:
    if shutil.which(tool) is not None:
        return
    msg = f"the benchmark needs {tool}: {install}"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    _need("wrk", "apt-get install -y wrk")
    _need("taskset", "apt-get install -y util-linux")
    _need("redis-server", "scripts/services.sh install")
    _need("rabbitmq-server", "scripts/services.sh install")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=840, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())


@pytest.mark.timeout(900)
def test_quick_benchmark_has_every_row_and_no_failed_request(quick_run: tuple[str, dict[str, Any]]) -> None:
    printed, results = quick_run
    rows = results["rows"]
    assert {(row["scenario"], row["key"]) for row in rows} == ROWS
    for row in rows:
        assert f"| {row['scenario']} " in printed, row
        assert f"| {row['target']} " in printed, row
        assert row["requests"] > 0, row
        assert not row["failed"], row
        assert row["socket_errors"] == 0, row


@pytest.mark.timeout(900)
def test_every_row_has_its_comparison_or_says_it_has_none(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, results = quick_run
    for row in results["rows"]:
        where = (row["scenario"], row["key"])
        if where in COMPARED:
            assert row["ratio"] > 0, row
            continue
        assert row["ratio"] is None, row
        has_baseline = row["key"] == "turnstile" and row["scenario"] in WITH_BASELINE
        assert row["note"] == ("" if has_baseline else "no baseline"), row


@pytest.mark.timeout(900)
def test_quick_benchmark_reports_memory_the_storm_and_every_target(quick_run: tuple[str, dict[str, Any]]) -> None:
    printed, results = quick_run
    memory = results["memory"]
    assert memory["rss"]["requests"] >= 1_000
    workers = memory["workers"]["workers"]
    assert len(workers) == 2
    assert all(w["rss_mib"] > 10 for w in workers)
    assert "Login storm: cached GET p99" in printed
    waits = results["hash_waits"]
    assert waits["waits"] > 0  # the storm's logins hashed, and Turnstile counted their waits
    assert 0 <= waits["within_bound"] <= waits["waits"]
    assert f"Hashes waited for a thread {waits['waits']:,} times" in printed
    assert "Tracing (cached GET): off installs nothing" in printed
    assert printed.count("  worker ") == 2
    assert len(results["targets"]) == TARGETS
    assert printed.count("[PASS]") + printed.count("[MISS]") == TARGETS


def test_profile_without_py_spy_stops_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _need("wrk", "apt-get install -y wrk")
    _need("taskset", "apt-get install -y util-linux")
    monkeypatch.setattr(bench.profile, "PY_SPY", str(tmp_path / "no-py-spy"))

    with pytest.raises(SystemExit) as stopped:
        bench.run.main(["--quick", "--profile", str(tmp_path / "prof")])

    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--profile needs py-spy" in err
    assert "bench: start-up" not in err
    assert not (tmp_path / "prof").exists()
