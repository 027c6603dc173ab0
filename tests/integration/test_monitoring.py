"""The chart's alerts and dashboard against the metrics the running service really exports.

Each scenario starts the whole service in one condition and scrapes its /metrics around a burst
of traffic (tests/integration/scrapes.py). promtool evaluates the chart's alert rules on those
series and checks that exactly the alerts meant for the condition fire; the dashboard's queries
must name metrics, labels and label values found in the same scrapes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import StackFactory
from tests.integration.promql import check_expressions, fill_in, problems, run_promtool
from tests.integration.scrapes import JOB, NAMESPACE, PODS, SCENARIOS, Sample, input_series, observe
from tests.services import ROOT

CHART_FILES = ROOT / "deploy" / "helm" / "turnstile" / "files"
RULES_FILE = CHART_FILES / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART_FILES / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
EVAL_TIME = "40m"

Alert = tuple[str, dict[str, str]]  # alert name, the labels it fires with
RELEASE = {"namespace": NAMESPACE, "job": JOB}
LIMITERS_ON_THE_WAY = ("register-client", "login-client", "login-client-email", "login-email")
EXPECTED: dict[str, list[Alert]] = {
    "healthy": [],
    "password-guessing": [("TurnstileLoginsRateLimited", {"severity": "warning", **RELEASE})],
    "data-service-down": [
        ("TurnstileCircuitOpen", {"severity": "critical", "upstream": "data_service", **RELEASE}),
        ("TurnstileHighErrorRate", {"severity": "critical", **RELEASE}),
    ],
    # logins need Redis for their sessions: they answer 503, and that is an error rate too
    "redis-down": [
        ("TurnstileCacheBypassHigh", {"severity": "warning", **RELEASE}),
        ("TurnstileHighErrorRate", {"severity": "critical", **RELEASE}),
        *[
            ("TurnstileRateLimiterFailingOpen", {"severity": "critical", "limiter": limiter, **RELEASE})
            for limiter in LIMITERS_ON_THE_WAY
        ],
    ],
    "broker-down": [
        ("TurnstileBrokerUnreachable", {"severity": "warning", **RELEASE}),
        ("TurnstileOutboxGrowing", {"severity": "warning", **RELEASE}),
    ],
    # In a cluster the unready pods get no request; here the burst reaches them, and its 502s count.
    "token-refused": [
        ("TurnstileUpstreamRefused", {"severity": "critical", "upstream": "data_service", **RELEASE}),
        ("TurnstileHighErrorRate", {"severity": "critical", **RELEASE}),
    ],
    "loop-blocked": [("TurnstileEventLoopBlocked", {"severity": "warning", **RELEASE})],
    "data-service-slow": [("TurnstileUpstreamSlow", {"severity": "warning", "upstream": "data_service", **RELEASE})],
    "reload-refused": [("TurnstileReloadRefused", {"severity": "warning", **RELEASE})],
    "redis-data-lost": [("TurnstileRedisDataLost", {"severity": "warning", **RELEASE})],
}


@functools.cache
def shipped_rules() -> dict[str, Any]:
    """The rule groups as the chart ships them in its PrometheusRule."""
    from tests.deploy import rendering  # the Helm SDK is optional: importorskip inside

    values = rendering.merged(rendering.REQUIRED_VALUES, {"prometheusRule": {"enabled": True}})
    manifests = rendering.render(rendering.load_chart(), values)
    spec: dict[str, Any] = rendering.only(manifests, "PrometheusRule")["spec"]
    return spec


def alert_names() -> list[str]:
    return [rule["alert"] for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def test_the_rule_file_and_the_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump(shipped_rules()))
    for path in (RULES_FILE, rendered):
        result = run_promtool("check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def promtool_test(rules: dict[str, Any], series: list[dict[str, str]], expected: list[Alert]) -> dict[str, Any]:
    """A `promtool test rules` file: every alert at EVAL_TIME, firing exactly as `expected`."""
    cases = []
    for name in alert_names():
        fired = [{"exp_labels": labels} for alert, labels in expected if alert == name]
        cases.append({"eval_time": EVAL_TIME, "alertname": name, "exp_alerts": fired})
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }


def without_annotations(rules: dict[str, Any]) -> dict[str, Any]:
    # promtool compares annotations too; what they say is checked by `promtool check rules`
    groups = [
        {**group, "rules": [{k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]]}
        for group in rules["groups"]
    ]
    return {"groups": groups}


def assert_alerts(tmp_path: Path, series: list[dict[str, str]], expected: list[Alert], what: str) -> None:
    """promtool evaluates the shipped rules on `series`: exactly `expected` fire at EVAL_TIME."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(without_annotations(shipped_rules())))
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(promtool_test(shipped_rules(), series, expected)))
    result = run_promtool("test", "rules", test_file)
    assert result.returncode == 0, f"{what}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_alerts_fire_exactly_for_their_condition(
    stack: StackFactory, redis_db: str, amqp_url: str, tmp_path: Path, scenario: str
) -> None:
    observed = await observe(stack, scenario, redis_db, amqp_url)
    await asyncio.to_thread(assert_alerts, tmp_path, input_series(observed), EXPECTED[scenario], scenario)


def test_no_pod_answering_its_scrape_is_an_alert_of_its_own(tmp_path: Path) -> None:
    # Every other alert reads the pods' own series: with the pods down they all went quiet.
    down = [{"series": f'up{{instance="{pod}:8080", job="{JOB}", namespace="{NAMESPACE}", pod="{pod}"}}',
             "values": "1x5 0x60"} for pod in PODS]
    one_left = [{**down[0], "values": "1x65"}, down[1]]
    for series, expected in ((down, [("TurnstileDown", {"severity": "critical", **RELEASE})]), (one_left, []),
                             ([], [("TurnstileDown", {"severity": "critical", **RELEASE})])):
        assert_alerts(tmp_path, series, expected, str(series))


def test_workers_that_keep_dying_are_an_alert(tmp_path: Path) -> None:
    # A worker started again inside the container moves no Kubernetes restart count.
    up = [{"series": f'up{{instance="{pod}:8080", job="{JOB}", namespace="{NAMESPACE}", pod="{pod}"}}',
           "values": "1x60"} for pod in PODS]

    def restarts(values: str) -> list[dict[str, str]]:
        labels = f'instance="{PODS[0]}:8080", job="{JOB}", namespace="{NAMESPACE}", pod="{PODS[0]}", reason="signal"'
        return [*up, {"series": f"turnstile_worker_restarts_total{{{labels}}}", "values": values}]

    firing = [("TurnstileWorkerRestarting", {"severity": "warning", **RELEASE})]
    for series, expected in ((restarts("0x30 1 2 3 4 4x30"), firing), (restarts("0x30 1 1x30"), [])):
        assert_alerts(tmp_path, series, expected, str(series))


def test_every_alert_has_a_runbook_and_mail_a_placeholder() -> None:
    doc = OPERATIONS.read_text()
    missing = [name for name in alert_names() if f"\n### {name}\n" not in doc]
    assert missing == []
    assert "\n### Mail\n" in doc
    assert "mail" in RULES_FILE.read_text().lower()


# --- the dashboard ----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def panel_queries() -> dict[str, list[str]]:
    """Each panel's title and its queries (rows have none)."""
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
    }


def variable_queries() -> list[str]:
    return [v["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]


def test_the_committed_dashboard_is_the_generated_one() -> None:
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk (dev extra) generates it")
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "dashboard.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_dashboard_covers_what_operators_watch() -> None:
    queries = " ".join(q for qs in panel_queries().values() for q in qs)
    for metric in (
        "turnstile_requests_total", "turnstile_request_seconds_bucket", "turnstile_step_seconds_bucket",
        "turnstile_cache_requests_total", "turnstile_data_service_calls_total", "turnstile_circuit_state",
        "turnstile_events_published_total", "turnstile_outbox_depth", "turnstile_rate_limit_rejected_total",
    ):
        assert metric in queries
    assert 'pipeline="login"' in queries


def test_every_panel_query_parses(tmp_path: Path) -> None:
    queries = [fill_in(q) for qs in panel_queries().values() for q in qs]
    result = check_expressions(queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_panel_query_names_metrics_and_labels_the_service_exports(
    stack: StackFactory, redis_db: str, amqp_url: str
) -> None:
    exported = []
    for scenario in ("healthy", "password-guessing", "redis-down"):
        exported += list((await observe(stack, scenario, redis_db, amqp_url)).after.values())
    found = {
        f"{title}: {query}": problems(query, exported)
        for title, queries in panel_queries().items()
        for query in queries
    }
    found |= {f"variable: {query}": problems(query, exported) for query in variable_queries()}
    assert {where: what for where, what in found.items() if what} == {}


def test_the_checker_catches_a_misspelt_metric_label_or_value() -> None:
    # guards the test above with a scrape-shaped sample set
    exported = [Sample("turnstile_requests_total", frozenset({("pipeline", "login"), ("status", "200")}), 1, "counter")]
    assert problems('sum by (pipeline) (rate(turnstile_requests_total{job="x"}[5m]))', exported) == []
    assert problems("rate(turnstile_request_total[5m])", exported) == ["turnstile_request_total: not exported"]
    assert problems('turnstile_requests_total{route="login"}', exported)[0].endswith("no label 'route'")
    assert problems('turnstile_requests_total{pipeline="logins"}', exported)[0].endswith("no such series")
    assert problems("sum by (outcome) (turnstile_requests_total)", exported) == [
        "grouping by 'outcome': no selected series has it"
    ]


def test_every_panel_is_explained_in_the_operations_guide() -> None:
    doc = OPERATIONS.read_text()
    assert [title for title in panel_queries() if f"| {title} |" not in doc] == []
