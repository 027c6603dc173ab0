"""Every metric the service exports is in the operations guide's table, with its type and labels,
and the table names no metric that does not exist: the guide is what operators write queries from."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.services import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"
ROW = re.compile(r"^\| `(turnstile_[a-z_]+)` \| (\w+) \| ([^|]*)\|")

# Run in a process of its own: the metrics are module-level, registered as the core and the
# installed plugins are imported, and this process has registered test plugins' too.
EXPORTED = """
import json
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from app.main import create_app
from app.settings import load_settings
import app.serve  # what `turnstile serve` adds around the app: the connection bounds
create_app(load_settings({"PIPELINES_FILE": "pipelines.toml", "TURNSTILE_VAR_DIR": "/nonexistent"}))
found = {}
for collector in list(REGISTRY._collector_to_names):  # the registry offers no public listing
    if isinstance(collector, MetricWrapperBase) and collector._name.startswith("turnstile_"):
        suffix = "_total" if collector._type == "counter" else ""
        found[collector._name + suffix] = [collector._type, sorted(collector._labelnames)]
print(json.dumps(found))
"""


def exported() -> dict[str, tuple[str, set[str]]]:
    result = subprocess.run([sys.executable, "-c", EXPORTED], capture_output=True, text=True, cwd=ROOT,
                            timeout=60, check=True)
    return {name: (kind, set(labels)) for name, (kind, labels) in json.loads(result.stdout).items()}


def documented() -> dict[str, tuple[str, set[str]]]:
    rows = (ROW.match(line) for line in OPERATIONS.read_text().splitlines())
    return {m.group(1): (m.group(2), set(re.findall(r"`(\w+)`", m.group(3)))) for m in rows if m}


def test_the_metrics_table_is_every_exported_metric_with_its_type_and_labels() -> None:
    assert documented() == exported()
