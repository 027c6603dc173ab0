"""The chart lints, renders the right resources, and labels them consistently."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    Chart,
    HelmRenderError,
    Manifest,
    kinds,
    lint,
    merged,
    notes,
    only,
    render,
)

ERROR = 3
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "helm.sh/chart",
)


def test_chart_metadata_names_the_app_version(chart: Chart) -> None:
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "turnstile"
    assert meta["appVersion"] == "0.1.0"
    assert meta["version"]


@pytest.mark.parametrize("values_fixture", ["minimal_values", "full_values"])
def test_chart_lints_without_errors(values_fixture: str, request: pytest.FixtureRequest) -> None:
    values: dict[str, Any] = request.getfixturevalue(values_fixture)
    report = lint(CHART_DIR, values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= ERROR] == []


def test_chart_lints_without_errors_on_its_defaults() -> None:
    report = lint(CHART_DIR)
    assert report["errors"] == []


def test_default_values_refuse_to_render_naming_every_missing_setting(
    chart: Chart,
) -> None:
    # TURNSTILE_ENV=production would refuse to start without them: fail at install instead.
    with pytest.raises(HelmRenderError) as caught:
        render(chart, {})
    message = str(caught.value)
    for setting in ("dataService.url", "redis.url", "rabbitmq.url", "mail.smtpUrl", "mail.from", "mail.publicUrl"):
        assert setting in message


def test_minimal_values_render_the_default_resources(minimal_manifests: list[Manifest]) -> None:
    assert kinds(minimal_manifests) == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    }


def test_full_values_render_every_optional_resource(full_manifests: list[Manifest]) -> None:
    assert {"Ingress", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"} <= kinds(full_manifests)
    config_maps = [m["metadata"]["name"] for m in full_manifests if m["kind"] == "ConfigMap"]
    assert f"{FULLNAME}-dashboard" in config_maps
    # every secret comes from an existing Secret, so the chart generates none
    assert "Secret" not in kinds(full_manifests)


@pytest.mark.parametrize("manifests_fixture", ["minimal_manifests", "full_manifests"])
def test_every_resource_carries_the_standard_labels(
    manifests_fixture: str, request: pytest.FixtureRequest, chart: Chart
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        missing = [key for key in STANDARD_LABELS if key not in labels]
        assert missing == [], f"{manifest['kind']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == chart.metadata["appVersion"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == f"turnstile-{chart.metadata['version']}"


@pytest.mark.parametrize("manifests_fixture", ["minimal_manifests", "full_manifests"])
def test_selectors_match_the_server_pods_only(manifests_fixture: str, request: pytest.FixtureRequest) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    deployment = only(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert selector["app.kubernetes.io/component"] == "server"
    # the selector must not contain labels that change on upgrade
    assert "app.kubernetes.io/version" not in selector
    assert "helm.sh/chart" not in selector
    # the Service, and with a ServiceMonitor the metrics Service beside it
    assert all(m["spec"]["selector"] == selector for m in manifests if m["kind"] == "Service")
    assert only(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    test_pod = only(manifests, "Pod")
    assert not selector.items() <= test_pod["metadata"]["labels"].items()


def test_hpa_owns_the_replica_count_when_enabled(minimal_manifests: list[Manifest]) -> None:
    deployment = only(minimal_manifests, "Deployment")
    hpa = only(minimal_manifests, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert hpa["spec"]["minReplicas"] >= 2
    metrics = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert metrics == {"cpu": {"type": "Utilization", "averageUtilization": 70}}


def test_hpa_adds_a_memory_target_when_asked(full_manifests: list[Manifest]) -> None:
    hpa = only(full_manifests, "HorizontalPodAutoscaler")
    metrics = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert metrics["memory"] == {"type": "Utilization", "averageUtilization": 80}


def test_fixed_replicas_without_hpa(chart: Chart, minimal_values: dict[str, Any]) -> None:
    values = merged(minimal_values, {"autoscaling": {"enabled": False}, "replicaCount": 4})
    manifests = render(chart, values)
    assert "HorizontalPodAutoscaler" not in kinds(manifests)
    assert only(manifests, "Deployment")["spec"]["replicas"] == 4


def test_pods_spread_across_nodes(minimal_manifests: list[Manifest]) -> None:
    pod = only(minimal_manifests, "Deployment")["spec"]["template"]
    constraints = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
    assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_pdb_tolerates_one_pod_down_by_default(minimal_manifests: list[Manifest]) -> None:
    assert only(minimal_manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_pdb_lets_drains_evict_unready_pods(minimal_manifests: list[Manifest], full_manifests: list[Manifest]) -> None:
    # an unreachable data service makes every pod unready; a drain must not stall on the budget
    assert only(minimal_manifests, "PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert only(full_manifests, "PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"


def test_service_forwards_to_the_named_http_port(minimal_manifests: list[Manifest]) -> None:
    service = only(minimal_manifests, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    container = only(minimal_manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_ingress_exposes_only_the_api(full_manifests: list[Manifest]) -> None:
    ingress = only(full_manifests, "Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "api.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/api"
    assert path["backend"] == {"service": {"name": FULLNAME, "port": {"name": "http"}}}
    assert ingress["spec"]["tls"][0]["secretName"] == "api-example-com-tls"


def egress_ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for p in rule["ports"]}


KUBE_DNS = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
]


def test_network_policy_is_on_by_default_and_restricts_egress(minimal_manifests: list[Manifest]) -> None:
    policy = only(minimal_manifests, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == only(minimal_manifests, "Service")["spec"]["selector"]
    dns, *rules = policy["spec"]["egress"]
    # DNS goes to the cluster DNS pods only, never to any address on port 53
    assert dns["to"] == KUBE_DNS
    assert egress_ports(dns) == {(53, "UDP"), (53, "TCP")}
    # Redis, RabbitMQ, the data service (its port from dataService.url) and the SMTP server
    # (production needs mail), and nothing else
    assert [egress_ports(rule) for rule in rules] == [
        {(6379, "TCP"), (6380, "TCP"), (26379, "TCP")},
        {(5672, "TCP"), (5671, "TCP")},
        {(8000, "TCP")},
        {(25, "TCP"), (465, "TCP"), (587, "TCP")},
    ]
    assert all("to" not in rule for rule in rules)  # no peers given: those ports, any address
    assert all(rule.get("ports") for rule in policy["spec"]["egress"]), "a rule without ports allows everything"


@pytest.mark.parametrize(("url", "port"), [("https://users.example.com", 443), ("http://users-data", 80)])
def test_the_data_service_port_follows_its_url(
    chart: Chart, minimal_values: dict[str, Any], url: str, port: int
) -> None:
    policy = only(render(chart, merged(minimal_values, {"dataService": {"url": url}})), "NetworkPolicy")
    assert egress_ports(policy["spec"]["egress"][3]) == {(port, "TCP")}


def test_network_policy_admits_the_given_peers_and_the_test_pod(full_manifests: list[Manifest]) -> None:
    policy = only(full_manifests, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    test_pod_labels = only(full_manifests, "Pod")["metadata"]["labels"]
    selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"] if "podSelector" in peer]
    assert any(s.items() <= test_pod_labels.items() for s in selectors)
    assert len(rule["from"]) == 3


def test_egress_goes_to_the_given_peers_and_to_smtp_and_otlp_once_configured(full_manifests: list[Manifest]) -> None:
    # values-full.yaml names an SMTP server (mail) and OTEL_EXPORTER_OTLP_ENDPOINT in extraEnv,
    # smtp/otlp.enabled false
    dns, redis, rabbitmq, data, smtp, otlp, extra = only(full_manifests, "NetworkPolicy")["spec"]["egress"]
    assert dns["to"] == KUBE_DNS
    assert redis["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "redis"}
    assert egress_ports(redis) == {(6379, "TCP")}
    assert rabbitmq["to"] == [{"ipBlock": {"cidr": "10.60.0.0/24"}}]
    assert egress_ports(rabbitmq) == {(5671, "TCP")}
    assert data["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "users-data"}
    assert egress_ports(data) == {(8000, "TCP")}
    assert smtp["to"] == [{"ipBlock": {"cidr": "192.0.2.25/32"}}]
    assert egress_ports(smtp) == {(587, "TCP")}
    assert "to" not in otlp
    assert egress_ports(otlp) == {(4318, "TCP")}
    assert extra["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]


def test_smtp_and_otlp_open_once_configured(chart: Chart, minimal_values: dict[str, Any]) -> None:
    def ports(values: dict[str, Any]) -> list[set[tuple[int, str]]]:
        return [egress_ports(rule) for rule in only(render(chart, values), "NetworkPolicy")["spec"]["egress"]]

    # The chart runs in production, which needs mail: the minimal values name an SMTP server,
    # so its ports are open; OTLP's are not until a collector is named.
    assert ports(minimal_values)[-1] == {(25, "TCP"), (465, "TCP"), (587, "TCP")}
    tracing = merged(minimal_values, {"extraEnv": [{"name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": "x"}]})
    assert ports(tracing)[-1] == {(4317, "TCP"), (4318, "TCP")}
    assert len(ports(tracing)) == len(ports(minimal_values)) + 1


def test_network_policy_can_be_turned_off(chart: Chart, minimal_values: dict[str, Any]) -> None:
    manifests = render(chart, merged(minimal_values, {"networkPolicy": {"enabled": False}}))
    assert "NetworkPolicy" not in kinds(manifests)


def test_service_monitor_scrapes_metrics_on_the_http_port(full_manifests: list[Manifest]) -> None:
    monitor = only(full_manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    # It selects the metrics Service alone, which lists unready pods too (their metrics say why
    # they are unready), and whose selector is the pods' own.
    services = [m for m in full_manifests if m["kind"] == "Service"]
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    (selected,) = [s for s in services if wanted <= s["metadata"]["labels"].items()]
    assert selected["metadata"]["name"] == f"{FULLNAME}-metrics"
    assert selected["spec"]["publishNotReadyAddresses"] is True
    (main,) = [s for s in services if s is not selected]
    assert selected["spec"]["selector"] == main["spec"]["selector"]
    assert selected["spec"]["ports"][0]["targetPort"] == "http"


def test_helm_test_pod_checks_readyz_through_the_service(minimal_manifests: list[Manifest]) -> None:
    pod = only(minimal_manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    assert {"name": "TURNSTILE_URL", "value": f"http://{FULLNAME}:80"} in container["env"]
    script = container["command"][2]
    assert '"$base/readyz"' in script
    assert '"$base/api/v1/auth/login"' in script
    assert pod["spec"]["restartPolicy"] == "Never"
    # what the script does against a running service: tests/integration/test_helm_test_readyz.py


def test_prometheus_rule_ships_the_rule_file_with_labels_and_runbook_links(full_manifests: list[Manifest]) -> None:
    rule = only(full_manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    shipped = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in shipped["groups"]]
    for group, shipped_group in zip(rule["spec"]["groups"], shipped["groups"], strict=True):
        for alert, source in zip(group["rules"], shipped_group["rules"], strict=True):
            # the placeholder scrape target of TurnstileDown becomes this release's
            target = f'job="{FULLNAME}-metrics", namespace="{NAMESPACE}"'
            assert alert["expr"] == source["expr"].replace('job="turnstile-metrics", namespace="turnstile"', target)
            assert alert["labels"] == {**source["labels"], "team": "identity"}
            anchor = source["alert"].lower()
            assert alert["annotations"]["runbook_url"] == f"https://docs.example.com/turnstile/operations#{anchor}"


def test_turnstile_down_watches_this_releases_scrape_job_or_the_one_given(
    chart: Chart, minimal_values: dict[str, Any]
) -> None:
    def down_expr(values: dict[str, Any]) -> str:
        rule = only(render(chart, merged(minimal_values, values)), "PrometheusRule")
        (expr,) = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "TurnstileDown"]
        return str(expr)

    expr = down_expr({"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    assert f'up{{job="{FULLNAME}-metrics", namespace="{NAMESPACE}"}}' in expr
    manifests = render(chart, merged(minimal_values, {"serviceMonitor": {"enabled": True}}))
    services = {m["metadata"]["name"] for m in manifests if m["kind"] == "Service"}
    assert f"{FULLNAME}-metrics" in services  # the job the ServiceMonitor gives: its Service's name
    expr = down_expr({"prometheusRule": {"enabled": True, "scrapeJob": "kubernetes-pods"}})
    assert f'up{{job="kubernetes-pods", namespace="{NAMESPACE}"}}' in expr


def test_grafana_dashboard_config_map_carries_the_sidecar_label(full_manifests: list[Manifest]) -> None:
    (config_map,) = [m for m in full_manifests if m["metadata"]["name"] == f"{FULLNAME}-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Identity"}
    shipped = (CHART_DIR / "files" / "grafana-dashboard.json").read_text()
    assert json.loads(config_map["data"]["turnstile.json"]) == json.loads(shipped)


def test_notes_tell_how_to_check_the_rollout(chart: Chart, minimal_values: dict[str, Any]) -> None:
    text = notes(chart, minimal_values)
    assert f"rollout status deployment/{FULLNAME}" in text
    assert f"helm test {RELEASE}" in text
