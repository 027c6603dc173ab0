"""values.schema.json accepts the documented values and refuses wrong types and unknown keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import CHART_DIR, Chart, HelmRenderError, HelmValuesError, merged, render


def test_chart_defaults_satisfy_the_schema(chart: Chart) -> None:
    chart.validate_schema(chart.merge_values({}))


def test_full_values_satisfy_the_schema(chart: Chart, full_values: dict[str, Any]) -> None:
    chart.validate_schema(chart.merge_values(full_values))


def test_every_default_value_is_described_by_the_schema() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(defaults) <= set(schema["properties"])


@pytest.mark.parametrize(
    "url",
    [
        "redis://:secret@redis.data.svc:6379/0",
        "rediss://default:secret@redis.example.com:6380/0?ssl_cert_reqs=required",
        "redis+cluster://:secret@redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379",
        "rediss+cluster://redis-cluster.data.svc:6379",
        "redis+sentinel://:secret@sentinel-0:26379,sentinel-1:26379,sentinel-2:26379/mymaster/0",
        "redis+sentinel://sentinel:26379/mymaster",
        "redis://redis",
    ],
)
def test_schema_accepts_every_redis_url_form_turnstile_reads(
    chart: Chart, minimal_values: dict[str, Any], url: str
) -> None:
    chart.validate_schema(chart.merge_values({"redis": {"url": url}}))
    render(chart, merged(minimal_values, {"redis": {"url": url}}))  # and the template's own check


# Kubernetes objects passed through as they are: documented by the key that holds them.
# Label maps: the keys are the labels themselves.
FREE_FORM = ("updateStrategy", "behavior", "resources", "hosts", "podLabels", "labels")


def test_every_value_in_values_yaml_has_a_comment() -> None:
    undocumented: list[str] = []
    documented: dict[int, bool] = {}  # indent -> whether the last key at that indent was
    previous, previous_indent = "", 0
    parents: list[tuple[int, str]] = []
    for line in (CHART_DIR / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#") or not stripped:
            previous, previous_indent = stripped, indent
            continue
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key = stripped.split(":", 1)[0].lstrip("- ")
        if any(name in FREE_FORM for _, name in parents) or stripped.startswith("-") or ":" not in stripped:
            previous, previous_indent = stripped, indent
            continue
        # a comment right above, or one shared with the sibling right above (no blank line between)
        sibling_above = bool(previous) and previous_indent == indent
        ok = previous.startswith("#") or (sibling_above and documented.get(indent, False))
        documented[indent] = ok
        if not ok:
            undocumented.append(".".join([name for _, name in parents] + [key]))
        parents.append((indent, key))
        previous, previous_indent = stripped, indent
    assert undocumented == [], "\n".join(undocumented)


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        pytest.param({"replicaCount": "3"}, "/replicaCount", id="string-for-integer"),
        pytest.param({"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled", id="string-for-boolean"),
        pytest.param({"service": {"port": 70000}}, "/service/port", id="port-out-of-range"),
        pytest.param({"image": {"tag": 1.2}}, "/image/tag", id="number-for-tag"),
        pytest.param({"resources": {"requests": {"cpu": -1}}}, "/resources/requests/cpu", id="negative-cpu"),
        pytest.param({"shutdown": {"drainSeconds": 0}}, "/shutdown/drainSeconds", id="zero-drain"),
        pytest.param({"probes": {"startup": {"periodSeconds": 0}}}, "/probes/startup/periodSeconds", id="probe-0"),
        pytest.param({"logFormat": "xml"}, "/logFormat", id="unknown-log-format"),
        pytest.param({"logLevel": "verbose"}, "/logLevel", id="unknown-log-level"),
        pytest.param({"image": {"digest": "latest"}}, "/image/digest", id="digest-format"),
        pytest.param({"trustedProxies": "10.0.0.0/8"}, "/trustedProxies", id="proxies-not-a-list"),
        pytest.param({"trustedProxies": ["ingress-nginx"]}, "/trustedProxies/0", id="proxy-not-a-network"),
        pytest.param(
            {"ingress": {"hosts": [{"host": "a.example.com", "paths": []}]}},
            "/ingress/hosts/0/paths",
            id="ingress-host-without-paths",
        ),
        pytest.param({"nodeSelector": {"zone": 1}}, "/nodeSelector/zone", id="number-in-string-map"),
        pytest.param({"replicas": 3}, "'replicas' not allowed", id="unknown-top-level-key"),
        pytest.param({"image": {"tagg": "x"}}, "'tagg' not allowed", id="unknown-image-key"),
        pytest.param({"redis": {"existingSecret": {"nmae": "x"}}}, "'nmae' not allowed", id="unknown-secret-ref-key"),
        pytest.param({"probes": {"liveness": {"path": "/"}}}, "'path' not allowed", id="unknown-probe-key"),
        pytest.param({"serviceMonitor": {"enable": True}}, "'enable' not allowed", id="unknown-monitor-key"),
        pytest.param({"shutdown": {"grace": 60}}, "'grace' not allowed", id="unknown-shutdown-key"),
        pytest.param({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory", id="memory-unparsable"),
        pytest.param({"passwordHashing": {"concurrentHashes": -1}}, "/passwordHashing/concurrentHashes", id="hashes"),
        pytest.param({"extraEnv": [{"name": "ARGON2_MEMORY_KIB", "value": "8"}]}, "/extraEnv/0/name", id="argon2-env"),
        pytest.param({"extraEnv": [{"name": "ARGON2_MAX_CONCURRENT", "value": "8"}]}, "/extraEnv/0/name",
                     id="argon2-concurrency-env"),
        pytest.param({"extraVolumes": [{"name": "tmp", "emptyDir": {}}]}, "/extraVolumes/0/name", id="volume-clash"),
        pytest.param(
            {"extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/turnstile/ca"}]},
            "/extraVolumeMounts/0/mountPath",
            id="mount-inside-the-pipelines-mount",
        ),
        pytest.param({"extraVolumeMounts": [{"name": "ca"}]}, "mountPath", id="mount-without-path"),
        pytest.param(
            {"networkPolicy": {"egress": {"redis": {"to": [], "ports": []}}}},
            "/networkPolicy/egress/redis/ports",
            id="redis-egress-without-ports-would-allow-all",
        ),
        pytest.param({"networkPolicy": {"egress": [{"to": []}]}}, "/networkPolicy/egress", id="old-egress-list"),
        pytest.param({"networkPolicy": {"allowDns": True}}, "'allowDns' not allowed", id="dns-anywhere-gone"),
        pytest.param(
            {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Never"}},
            "/podDisruptionBudget/unhealthyPodEvictionPolicy",
            id="eviction-policy",
        ),
        pytest.param({"prometheusRule": {"runbookBaseUrl": "docs"}}, "/prometheusRule/runbookBaseUrl", id="runbook"),
        pytest.param({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels", id="lbl"),
    ],
)
def test_schema_refuses_bad_values(
    chart: Chart, minimal_values: dict[str, Any], override: dict[str, Any], complaint: str
) -> None:
    values = merged(minimal_values, override)
    with pytest.raises(HelmValuesError, match=complaint) as caught:
        chart.validate_schema(chart.merge_values(values))
    assert "turnstile" in str(caught.value)
    # install and upgrade run the same check before rendering anything
    with pytest.raises(HelmValuesError):
        render(chart, values)


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        pytest.param({"redis": {"url": "http://:S3cret-pass@redis:6379"}}, "redis.url must be a redis://", id="redis"),
        pytest.param({"redis": {"url": "rediss+sentinel://:S3cret-pass@s:26379/main"}}, "redis.url", id="sentinel-tls"),
        # Forms Turnstile refuses at start-up: a crash loop, caught at `helm upgrade` instead.
        pytest.param({"redis": {"url": "redis+sentinel://:S3cret-pass@s1:26379"}}, "service_name", id="no-service"),
        pytest.param({"redis": {"url": "redis://:S3cret-pass@r:6379/abc"}}, "redis.url", id="db-not-a-number"),
        pytest.param({"redis": {"url": "redis+cluster://:S3cret-pass@n1:6379/3"}}, "(no db)", id="cluster-db"),
        pytest.param({"rabbitmq": {"url": "redis://u:S3cret-pass@mq"}}, "rabbitmq.url must be an amqp://", id="amqp"),
        pytest.param({"mail": {"smtpUrl": "smtpx://u:S3cret-pass@mail"}}, "mail.smtpUrl must be an smtp://", id="smtp"),
        pytest.param({"jwt": {"secret": "S3cret-pass-too-short"}}, "jwt.secret must be at least 32", id="jwt-short"),
        pytest.param({"dataService": {"token": "S3cret-pass"}}, "dataService.token must be an RFC 6750", id="token"),
        pytest.param({"dataService": {"token": "S3cret-pass has spaces"}}, "dataService.token", id="token-charset"),
    ],
)
def test_a_secret_of_the_wrong_form_is_refused_without_showing_it(
    chart: Chart, minimal_values: dict[str, Any], override: dict[str, Any], complaint: str
) -> None:
    # The schema's message quoted the value it refused: a password or a key in a CI log.
    with pytest.raises(HelmRenderError) as caught:
        render(chart, merged(minimal_values, override))
    assert complaint in str(caught.value)
    assert "S3cret-pass" not in str(caught.value)
