"""promtool, and the series a PromQL expression selects, checked against a real scrape.

Good enough for the queries this project writes (selectors with quoted matchers, `by`/`without`
groupings); promtool itself checks that each expression parses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import attrs
import pytest
import yaml

from tests.integration.scrapes import TARGET_LABELS, Sample

SELECTOR = re.compile(r"\b(turnstile_[a-z0-9_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Grafana's variables, as Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "apps", "$job": "shop-turnstile"}


def promtool() -> str:
    """The promtool binary (scripts/services.sh install promtool); CI fails without it, a laptop skips."""
    found = shutil.which("promtool")
    if found is None:
        msg = "promtool is not installed; run scripts/services.sh install promtool"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def check_expressions(expressions: Iterable[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions, each as a recording rule."""
    rules = [{"record": f"turnstile:check:{n}", "expr": expr} for n, expr in enumerate(expressions)]
    path = tmp_path / "expressions.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    return run_promtool("check", "rules", path)


def fill_in(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@attrs.frozen
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, sample: Sample) -> bool:
        actual = sample.label(self.label) or ""
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@attrs.frozen
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


def selectors(expr: str) -> list[Selector]:
    return [
        Selector(metric, tuple(Matcher(*m.groups()) for m in MATCHER.finditer(inner or "")))
        for metric, inner in SELECTOR.findall(expr)
    ]


def groupings(expr: str) -> set[str]:
    return {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def problems(expr: str, samples: Iterable[Sample]) -> list[str]:
    """What in `expr` the service does not export: a metric, a label, or a label value no series has.
    Labels Prometheus adds to what it scrapes (namespace, job, pod, ...) are taken as given."""
    exported = list(samples)
    found: list[str] = []
    labels_seen: set[str] = set(TARGET_LABELS)
    for selector in selectors(expr):
        series = [s for s in exported if s.name == selector.metric]
        if not series:
            found.append(f"{selector.metric}: not exported")
            continue
        labels_seen |= {name for s in series for name, _ in s.labels}
        own = [m for m in selector.matchers if m.label not in TARGET_LABELS]
        for matcher in own:
            if not any(matcher.label in dict(s.labels) for s in series):
                found.append(f"{selector.metric}: no label {matcher.label!r}")
        if not any(all(m.matches(s) for m in own) for s in series):
            wanted = ", ".join(f'{m.label}{m.op}"{m.value}"' for m in own)
            found.append(f"{selector.metric}{{{wanted}}}: no such series")
    found += [f"grouping by {label!r}: no selected series has it" for label in groupings(expr) - labels_seen]
    return found
