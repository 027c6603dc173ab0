"""jwt.previous: the keys of a rotation that still verify, mounted from an existing Secret."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.rendering import Chart, HelmRenderError, HelmValuesError, Manifest, env_of, merged, only, render

MOUNT = "/etc/turnstile-jwt-previous"


def pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = only(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def previous(**values: str) -> dict[str, Any]:
    return {"jwt": {"previous": {"existingSecret": "turnstile-jwt-previous", **values}}}


def test_no_previous_keys_by_default(minimal_manifests: list[Manifest]) -> None:
    env = env_of(only(minimal_manifests, "Deployment"))
    assert "JWT_PREVIOUS_SECRETS_FILE" not in env
    assert "JWT_PREVIOUS_PUBLIC_KEYS_FILE" not in env
    assert "jwt-previous" not in {volume["name"] for volume in pod_spec(minimal_manifests)["volumes"]}


@pytest.mark.parametrize(("key_value", "variable", "file"), [
    ("secretsKey", "JWT_PREVIOUS_SECRETS_FILE", "previous-secrets"),
    ("publicKeysKey", "JWT_PREVIOUS_PUBLIC_KEYS_FILE", "previous-public-keys.pem"),
])
def test_previous_keys_are_mounted_read_only_and_named_by_their_variable(
    chart: Chart, minimal_values: dict[str, Any], key_value: str, variable: str, file: str
) -> None:
    manifests = render(chart, merged(minimal_values, previous(**{key_value: "old"})))
    env = env_of(only(manifests, "Deployment"))
    assert env[variable] == {"name": variable, "value": f"{MOUNT}/{file}"}
    (other,) = {"JWT_PREVIOUS_SECRETS_FILE", "JWT_PREVIOUS_PUBLIC_KEYS_FILE"} - {variable}
    assert other not in env
    spec = pod_spec(manifests)
    volume = next(v for v in spec["volumes"] if v["name"] == "jwt-previous")
    assert volume["secret"] == {"secretName": "turnstile-jwt-previous", "defaultMode": 0o440,
                                "items": [{"key": "old", "path": file}]}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "jwt-previous")
    assert mount == {"name": "jwt-previous", "mountPath": MOUNT, "readOnly": True}


def test_a_change_of_previous_keys_rolls_the_pods(chart: Chart, minimal_values: dict[str, Any]) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = only(render(chart, values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])

    without = checksum(minimal_values)
    with_secrets = checksum(merged(minimal_values, previous(secretsKey="old")))
    with_keys = checksum(merged(minimal_values, previous(publicKeysKey="old.pem")))
    assert len({without, with_secrets, with_keys}) == 3


@pytest.mark.parametrize(("change", "message"), [
    (previous(), r"jwt\.previous\.existingSecret is set but names no key"),
    ({"jwt": {"previous": {"secretsKey": "old"}}}, r"name keys of jwt\.previous\.existingSecret: set it"),
])
def test_half_a_previous_keys_setting_is_refused(
    chart: Chart, minimal_values: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmRenderError, match=message):
        render(chart, merged(minimal_values, change))


def test_the_schema_refuses_a_key_name_a_secret_cannot_hold(chart: Chart) -> None:
    with pytest.raises(HelmValuesError):
        chart.validate_schema(chart.merge_values(previous(secretsKey="old secrets")))


def test_the_full_values_mount_a_previous_public_key_beside_the_key_files(full_manifests: list[Manifest]) -> None:
    env = env_of(only(full_manifests, "Deployment"))
    assert env["JWT_PREVIOUS_PUBLIC_KEYS_FILE"]["value"] == f"{MOUNT}/previous-public-keys.pem"
    volume = next(v for v in pod_spec(full_manifests)["volumes"] if v["name"] == "jwt-previous")
    assert volume["secret"]["items"] == [{"key": "previous-public.pem", "path": "previous-public-keys.pem"}]
