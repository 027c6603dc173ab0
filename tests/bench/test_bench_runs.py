"""The benchmark keeps working: one run in quick mode (seconds, not a measurement).

Speed is never asserted here; the table must have every scenario and no request may fail.
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

from tests.services import ROOT

SCENARIOS = ("cached GET", "uncached GET", "PATCH", "create", "login")


def _need(tool: str, install: str) -> None:
    if shutil.which(tool) is not None:
        return
    msg = f"the benchmark needs {tool}: {install}"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.mark.timeout(900)
def test_quick_benchmark_has_every_scenario_and_no_failed_request(tmp_path: Path) -> None:
    _need("wrk", "apt-get install -y wrk")
    _need("taskset", "apt-get install -y util-linux")
    _need("redis-server", "scripts/services.sh install")
    _need("rabbitmq-server", "scripts/services.sh install")
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=840, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout
    for scenario in SCENARIOS:
        assert f"| {scenario} " in table, table
    results: dict[str, Any] = json.loads(out.read_text())
    rows = results["rows"]
    assert {row["scenario"] for row in rows} == set(SCENARIOS)
    assert {row["target"] for row in rows if row["scenario"] == "cached GET"} == {"turnstile", "baseline"}
    for row in rows:
        assert row["requests"] > 0, row
        assert row["non_2xx"] == 0, row
        assert row["socket_errors"] == 0, row
    assert results["rss"]["requests"] >= 5_000
