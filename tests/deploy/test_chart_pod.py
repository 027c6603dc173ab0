"""The server pod: hardened security context, writable paths, probes and a drain-aware shutdown."""

from __future__ import annotations

import inspect
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.clients.amqp import AmqpPublisher
from app.serve import IN_FLIGHT_GRACE_S
from app.wiring import PUBLISHER_FLUSH_DEADLINE_S
from tests.deploy.rendering import (
    CHART_DIR,
    FULLNAME,
    Chart,
    HelmRenderError,
    Manifest,
    env_of,
    merged,
    only,
    render,
)

BOTH = pytest.mark.parametrize("manifests_fixture", ["minimal_manifests", "full_manifests"])
MEMORY_UNITS = {
    "": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12
}
# What the chart allows for closing Redis, RabbitMQ and data-service connections after the flush.
CLOSING_S = 2.0
PUBLISHER_STOP_SLACK_S = 2.0


def pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = only(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def server_container(manifests: list[Manifest]) -> dict[str, Any]:
    (container,) = pod_spec(manifests)["containers"]
    assert isinstance(container, dict)
    return container


@BOTH
def test_pod_runs_as_uid_10001_with_the_runtime_seccomp_profile(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    context = pod_spec(manifests)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@BOTH
def test_container_is_locked_down(manifests_fixture: str, request: pytest.FixtureRequest) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    context = server_container(manifests)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_helm_test_pod_is_non_root_and_restricted(minimal_manifests: list[Manifest]) -> None:
    pod = only(minimal_manifests, "Pod")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    (container,) = pod["spec"]["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_extra_volumes_mount_a_ca_and_key_files(full_manifests: list[Manifest]) -> None:
    spec = pod_spec(full_manifests)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in server_container(full_manifests)["volumeMounts"]}
    assert volumes[mounts["/etc/turnstile-tls"]["name"]]["configMap"] == {"name": "company-root-ca"}
    assert volumes[mounts["/etc/turnstile-keys"]["name"]]["secret"]["secretName"] == "turnstile-jwt-keys"
    extra = ("/etc/turnstile-tls", "/etc/turnstile-keys")
    assert all(mounts[path]["readOnly"] for path in extra)
    # the chart's own volumes are still there
    assert {"var", "tmp", "pipelines"} <= set(volumes)


def test_only_var_and_tmp_are_writable(minimal_manifests: list[Manifest]) -> None:
    spec = pod_spec(minimal_manifests)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in server_container(minimal_manifests)["volumeMounts"]}
    assert set(mounts) == {"/app/var", "/tmp", "/etc/turnstile"}
    for path in ("/app/var", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]]
        assert volumes[mounts[path]["name"]]["emptyDir"]["sizeLimit"]
    assert mounts["/etc/turnstile"]["readOnly"] is True
    assert volumes[mounts["/etc/turnstile"]["name"]]["configMap"]["name"] == f"{FULLNAME}-pipelines"


def test_service_account_token_is_never_mounted(full_manifests: list[Manifest]) -> None:
    account = only(full_manifests, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["name"] == "turnstile-api"
    spec = pod_spec(full_manifests)
    assert spec["serviceAccountName"] == "turnstile-api"
    assert spec["automountServiceAccountToken"] is False


def test_probes_use_healthz_and_readyz_on_the_http_port(minimal_manifests: list[Manifest]) -> None:
    container = server_container(minimal_manifests)
    paths = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_resources_have_requests_and_limits(minimal_manifests: list[Manifest]) -> None:
    resources = server_container(minimal_manifests)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def mebibytes(quantity: str | int) -> float:
    """A Kubernetes memory quantity in MiB."""
    text = str(quantity)
    number = re.match(r"[0-9.]+", text)
    assert number is not None, text
    return float(number.group()) * MEMORY_UNITS[text[number.end() :]] / 2**20


def cores(quantity: str | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def hashing_memory_needed(values: dict[str, Any], resources: dict[str, Any]) -> float:
    """MiB the pod needs with the most argon2 hashes the service runs at once (contract §12: as many
    as the cores it may use, a CPU limit's worth), each holding ARGON2_MEMORY_KIB."""
    hashing = values["passwordHashing"]
    hashes = hashing["concurrentHashes"] or math.ceil(cores(resources["limits"]["cpu"]))
    return float(hashing["baselineMemoryMiB"] + hashes * hashing["argon2MemoryKib"] / 1024)


@BOTH
def test_memory_request_equals_a_limit_that_holds_every_concurrent_hash(
    manifests_fixture: str, request: pytest.FixtureRequest, chart: Chart
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    values = chart.merge_values(request.getfixturevalue(manifests_fixture.replace("manifests", "values")))
    container = server_container(manifests)
    resources = container["resources"]
    assert mebibytes(resources["requests"]["memory"]) == mebibytes(resources["limits"]["memory"])
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    # the cost the chart sizes for is the one the service is told to use
    assert int(env["ARGON2_MEMORY_KIB"]) == values["passwordHashing"]["argon2MemoryKib"]
    # and it never runs more hashes at once than the memory was sized for
    hashing = values["passwordHashing"]
    assert int(env["ARGON2_MAX_CONCURRENT"]) == (
        hashing["concurrentHashes"] or math.ceil(cores(resources["limits"]["cpu"])))
    assert mebibytes(resources["limits"]["memory"]) >= hashing_memory_needed(values, resources)


def test_the_default_memory_holds_two_production_hashes(minimal_manifests: list[Manifest]) -> None:
    # 192 MiB baseline + 2 cores x 64 MiB (argon2id's production memory cost) = 320 MiB
    resources = server_container(minimal_manifests)["resources"]
    assert cores(resources["limits"]["cpu"]) == 2
    assert mebibytes(resources["limits"]["memory"]) >= 192 + 2 * 64


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        pytest.param(
            {"resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "1Gi"}}},
            r"requests\.memory \(256Mi\) must equal resources\.limits\.memory \(1Gi\)",
            id="request-below-limit",
        ),
        pytest.param(
            {"resources": {"requests": {"memory": "384Mi"}, "limits": {"cpu": "4", "memory": "384Mi"}}},
            r"192 \+ 4 concurrent hashes x 65536 KiB .* = 448 MiB",
            id="more-cores-same-memory",
        ),
        pytest.param(
            {"passwordHashing": {"argon2MemoryKib": 131072}},
            r"= 448 MiB",
            id="costlier-hashes",
        ),
        pytest.param(
            {"passwordHashing": {"concurrentHashes": 8}},
            r"8 concurrent hashes .* = 704 MiB",
            id="explicit-concurrency",
        ),
    ],
)
def test_memory_too_small_for_the_hashes_is_refused(
    chart: Chart, minimal_values: dict[str, Any], override: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(HelmRenderError, match=complaint):
        render(chart, merged(minimal_values, override))


def test_without_a_cpu_limit_the_number_of_hashes_must_be_given(chart: Chart, minimal_values: dict[str, Any]) -> None:
    values = merged(minimal_values, {"resources": {"limits": {"cpu": None}}})  # null deletes a default
    with pytest.raises(HelmRenderError, match=r"passwordHashing\.concurrentHashes"):
        render(chart, values)
    memory = {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    values = merged(values, {"passwordHashing": {"concurrentHashes": 3}, "resources": memory})
    assert server_container(render(chart, values))["resources"]["limits"] == {"memory": "512Mi"}


def shutdown_bound_after_drain() -> float:
    """The service's own bounds on what follows the drain (app/serve.py, app/wiring.py, the
    publisher's stop): in-flight requests, the event flush and its stop slack, closing."""
    return IN_FLIGHT_GRACE_S + PUBLISHER_FLUSH_DEADLINE_S + PUBLISHER_STOP_SLACK_S + CLOSING_S


@BOTH
def test_grace_period_covers_pre_stop_drain_in_flight_grace_and_event_flush(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    container = server_container(manifests)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep"
    pre_stop = int(command[1])
    drain = int(env_of(only(manifests, "Deployment"))["TURNSTILE_DRAIN_SECONDS"]["value"])
    assert pre_stop > 0
    assert drain > 0
    needed = pre_stop + drain + shutdown_bound_after_drain()
    assert pod_spec(manifests)["terminationGracePeriodSeconds"] >= needed


@pytest.mark.parametrize(
    ("pre_stop", "drain"), [(5, 20), (5, 10), (0, 1), (10, 20)], ids=["drain-20", "defaults", "shortest", "full"]
)
def test_a_grace_period_one_second_short_of_the_whole_shutdown_is_refused(
    chart: Chart, minimal_values: dict[str, Any], pre_stop: int, drain: int
) -> None:
    needed = math.ceil(pre_stop + drain + shutdown_bound_after_drain())
    shutdown = {"preStopSleepSeconds": pre_stop, "drainSeconds": drain}
    short = {"shutdown": {**shutdown, "terminationGracePeriodSeconds": needed - 1}}
    with pytest.raises(HelmRenderError, match=rf"terminationGracePeriodSeconds \({needed - 1}\).* = {needed}"):
        render(chart, merged(minimal_values, short))
    enough = {"shutdown": {**shutdown, "terminationGracePeriodSeconds": needed}}
    manifests = render(chart, merged(minimal_values, enough))
    assert pod_spec(manifests)["terminationGracePeriodSeconds"] == needed


def test_the_publisher_stop_slack_is_the_one_the_chart_counts() -> None:
    # AmqpPublisher.stop waits flush_deadline_s + 2.0 before it cancels the flush
    source = inspect.getsource(AmqpPublisher.stop)
    assert f"flush_deadline_s + {PUBLISHER_STOP_SLACK_S}" in source


def test_image_defaults_to_the_app_version_and_a_digest_pins_it(chart: Chart, minimal_values: dict[str, Any]) -> None:
    assert server_container(render(chart, minimal_values))["image"] == "turnstile:0.1.0"
    digest = "sha256:" + "ab" * 32
    pinned = render(chart, merged(minimal_values, {"image": {"repository": "reg/turnstile", "digest": digest}}))
    assert server_container(pinned)["image"] == f"reg/turnstile@{digest}"


def test_user_affinity_and_scheduling_values_reach_the_pod(full_manifests: list[Manifest]) -> None:
    spec = pod_spec(full_manifests)
    assert "podAntiAffinity" in spec["affinity"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert spec["priorityClassName"] == "business-critical"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]


LIVE_NAMESPACE = 'lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt"'
LIVE_DEPLOYMENT = 'lookup "apps/v1" "Deployment" .Release.Namespace (include "turnstile.fullname" .)'


@pytest.mark.parametrize(("live", "expected"), [
    (None, None),  # helm template, GitOps: the field is left out, the HPA's alone
    ("(dict)", 2),  # a first install: minReplicas, not one pod
    ('(dict "spec" (dict "replicas" 7))', 7),  # an upgrade: what the HPA left, never back to one
])
def test_with_the_hpa_the_pod_count_is_the_hpas(
    tmp_path: Path, minimal_values: dict[str, Any], live: str | None, expected: int | None
) -> None:
    # lookup() answers nothing without a cluster: the chart is rendered with its answers written in.
    chart_dir = tmp_path / "turnstile"
    shutil.copytree(CHART_DIR, chart_dir)
    template = chart_dir / "templates" / "deployment.yaml"
    text = template.read_text()
    assert LIVE_NAMESPACE in text
    assert LIVE_DEPLOYMENT in text
    if live is not None:
        template.write_text(text.replace(LIVE_NAMESPACE, "true").replace(LIVE_DEPLOYMENT, live))
    deployment = only(render(Chart.load(chart_dir), minimal_values), "Deployment")
    assert deployment["spec"].get("replicas") == expected
