"""The server pod: hardened security context, writable paths, probes and a drain-aware shutdown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.rendering import (
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


@BOTH
def test_grace_period_outlasts_pre_stop_and_drain(manifests_fixture: str, request: pytest.FixtureRequest) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    container = server_container(manifests)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep"
    pre_stop = int(command[1])
    drain = int(env_of(only(manifests, "Deployment"))["TURNSTILE_DRAIN_SECONDS"]["value"])
    assert pre_stop > 0
    assert drain > 0
    assert pod_spec(manifests)["terminationGracePeriodSeconds"] > pre_stop + drain


def test_a_grace_period_too_short_for_the_drain_is_refused(chart: Chart, minimal_values: dict[str, Any]) -> None:
    values = merged(
        minimal_values,
        {"shutdown": {"preStopSleepSeconds": 5, "drainSeconds": 20, "terminationGracePeriodSeconds": 25}},
    )
    with pytest.raises(HelmRenderError, match="terminationGracePeriodSeconds"):
        render(chart, values)


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
