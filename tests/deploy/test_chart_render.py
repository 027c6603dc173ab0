"""The chart lints, renders the right resources, and labels them consistently."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.rendering import (
    CHART_DIR,
    FULLNAME,
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
        "Pod",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    }


def test_full_values_render_every_optional_resource(full_manifests: list[Manifest]) -> None:
    assert {"Ingress", "NetworkPolicy", "ServiceMonitor"} <= kinds(full_manifests)
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
    assert only(manifests, "Service")["spec"]["selector"] == selector
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


def test_network_policy_admits_the_given_peers_and_the_test_pod(full_manifests: list[Manifest]) -> None:
    policy = only(full_manifests, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    test_pod_labels = only(full_manifests, "Pod")["metadata"]["labels"]
    selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"] if "podSelector" in peer]
    assert any(s.items() <= test_pod_labels.items() for s in selectors)
    assert len(rule["from"]) == 3
    dns = policy["spec"]["egress"][-1]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}


def test_network_policy_leaves_egress_open_without_egress_rules(chart: Chart, minimal_values: dict[str, Any]) -> None:
    manifests = render(chart, merged(minimal_values, {"networkPolicy": {"enabled": True}}))
    policy = only(manifests, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "from" not in policy["spec"]["ingress"][0]


def test_service_monitor_scrapes_metrics_on_the_http_port(full_manifests: list[Manifest]) -> None:
    monitor = only(full_manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    service = only(full_manifests, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_helm_test_pod_calls_healthz_through_the_service(minimal_manifests: list[Manifest]) -> None:
    pod = only(minimal_manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["command"][-1] == f"http://{FULLNAME}:80/healthz"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_tell_how_to_check_the_rollout(chart: Chart, minimal_values: dict[str, Any]) -> None:
    text = notes(chart, minimal_values)
    assert f"rollout status deployment/{FULLNAME}" in text
    assert f"helm test {RELEASE}" in text
