"""Every rendered manifest is valid Kubernetes, strictly (no unknown fields), on old and new clusters."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.rendering import Manifest, only

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) holds the Kubernetes schemas"
)

# The oldest version the chart supports (Chart.yaml kubeVersion), and two newer ones.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
# Custom resources: kubernetes-validate has no schema for them, and only warns.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def validate(manifest: Manifest, version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifests_fixture", ["minimal_manifests", "full_manifests"])
def test_rendered_manifests_validate_strictly(
    manifests_fixture: str, version: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    failures: list[str] = []
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            validate(manifest, version)
        except kubernetes_validate.SchemaNotFoundError:
            if manifest["kind"] not in CUSTOM_KINDS:
                failures.append(f"{name}: no schema for {manifest['apiVersion']} in {version}")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            failures.append(f"{name}: {path}: {error.message}")
    assert failures == []


def test_strict_validation_catches_an_unknown_field(minimal_manifests: list[Manifest]) -> None:
    # guards the test above: a typo in a template must not pass as valid
    deployment: dict[str, Any] = copy.deepcopy(only(minimal_manifests, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBERNETES_VERSIONS[0])
