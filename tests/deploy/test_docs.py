"""docs/deploy.md documents every chart value and the versions the tests validate against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "deploy.md"
VALUES = REPO_ROOT / "deploy" / "helm" / "turnstile" / "values.yaml"
# Kubernetes objects passed through whole: the table documents the key, not their insides.
WHOLE = {"updateStrategy", "autoscaling.behavior", "resources"}
# Label maps: the keys are the labels themselves.
WHOLE |= {"networkPolicy.dns.podLabels", "grafanaDashboard.labels"}


def value_keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in WHOLE:
            yield from value_keys(value, f"{path}.")
        else:
            yield path


def documented(path: str, doc: str) -> bool:
    parent = path.rsplit(".", 1)[0]
    return f"| `{path}` |" in doc or f"| `{parent}.*` |" in doc


def test_every_value_is_in_the_values_table() -> None:
    doc = DOC.read_text()
    missing = [path for path in value_keys(yaml.safe_load(VALUES.read_text())) if not documented(path, doc)]
    assert missing == []


def test_the_table_lists_no_value_the_chart_lacks() -> None:
    doc = DOC.read_text()
    keys = set(value_keys(yaml.safe_load(VALUES.read_text())))
    parents = {key.rsplit(".", 1)[0] for key in keys}
    table = doc.split("## Values", 1)[1]
    rows = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    stale = [row for row in rows if row not in keys and row.removesuffix(".*") not in parents]
    assert stale == []


def test_the_docs_state_the_oldest_supported_kubernetes() -> None:
    doc = DOC.read_text()
    chart = yaml.safe_load((VALUES.parent / "Chart.yaml").read_text())
    floor = ".".join(chart["kubeVersion"].removeprefix(">=").split(".")[:2])
    assert f"Kubernetes {floor} or newer" in doc
    assert f"against the {floor}," in doc


def _lookup(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def test_each_default_the_table_gives_is_the_charts() -> None:
    # A row whose default is one code span (`[6379, 6380, 26379]`, `true`, `""`) says what
    # values.yaml holds; the Redis ports' row had lost 6380 (TLS).
    values = yaml.safe_load(VALUES.read_text())
    table = DOC.read_text().split("## Values", 1)[1]
    wrong = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) < 3 or not cells[0].startswith("`") or cells[0].endswith(".*`"):
            continue
        default = cells[1]
        if not (default.startswith("`") and default.endswith("`") and default.count("`") == 2):
            continue
        try:
            said = yaml.safe_load(default.strip("`"))
            held = _lookup(values, cells[0].strip("`"))
        except (yaml.YAMLError, KeyError, TypeError):
            continue
        if said != held:
            wrong.append(f"{cells[0]}: the table says {default}, values.yaml holds {held!r}")
    assert wrong == []
