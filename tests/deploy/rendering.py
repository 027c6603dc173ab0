"""Render the Helm chart offline, as `helm template` would, for the deploy tests.

The Helm SDK comes from the dev extra (helm-python-sdk); without it every deploy test that
imports this module is skipped with that reason.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) renders the chart")

from helm_python import Chart, HelmRenderError, HelmValuesError, lint

__all__ = [
    "CHART_DIR",
    "FULLNAME",
    "NAMESPACE",
    "RELEASE",
    "REQUIRED_VALUES",
    "Chart",
    "HelmRenderError",
    "HelmValuesError",
    "Manifest",
    "env_of",
    "full_values",
    "kinds",
    "lint",
    "load_chart",
    "merged",
    "notes",
    "only",
    "render",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "turnstile"
FULL_VALUES_FILE = Path(__file__).with_name("values-full.yaml")
RELEASE = "shop"
NAMESPACE = "apps"
FULLNAME = f"{RELEASE}-turnstile"

# What TURNSTILE_ENV=production cannot do without: the chart refuses to render without them.
REQUIRED_VALUES: dict[str, Any] = {
    "dataService": {"url": "http://users-data.apps.svc:8000", "token": "users-data-token-0123456789"},
    "redis": {"url": "redis://redis.apps.svc:6379/0"},
    "rabbitmq": {"url": "amqp://turnstile:change-me@rabbitmq.apps.svc:5672/"},
    # `helm template` has no cluster to keep a generated key in: it must be given one
    "jwt": {"secret": "jwt-secret-of-the-deploy-tests-0123456789"},
    "mail": {
        "smtpUrl": "smtp+starttls://turnstile:mail-password@smtp.apps.svc:587",
        "from": "Shop <no-reply@shop.example.com>",
        "publicUrl": "https://shop.example.com",
    },
}

Manifest = dict[str, Any]


def load_chart() -> Chart:
    return Chart.load(CHART_DIR)


def full_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(FULL_VALUES_FILE.read_text())
    return loaded


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, recursively (as several `-f` files would be)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(chart: Chart, values: dict[str, Any]) -> list[Manifest]:
    """Every manifest `helm template` would print for these values (NOTES.txt left out)."""
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    manifests: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def notes(chart: Chart, values: dict[str, Any]) -> str:
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def only(manifests: list[Manifest], kind: str) -> Manifest:
    """The one manifest of this kind; fails when there are none or several."""
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(manifests: list[Manifest]) -> set[str]:
    return {m["kind"] for m in manifests}


def env_of(deployment: Manifest) -> dict[str, dict[str, Any]]:
    """The server container's env entries by name."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry for entry in container["env"]}
