"""The container's environment: production settings, secret references and pipelines.toml."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from tests.deploy.rendering import (
    CHART_DIR,
    FULLNAME,
    Chart,
    HelmRenderError,
    HelmValuesError,
    Manifest,
    env_of,
    kinds,
    merged,
    only,
    render,
)

CHECKSUM = "checksum/config"
SECRET_CHECKSUM = "checksum/secret"


def secret_ref(env: dict[str, dict[str, Any]], name: str) -> tuple[str, str]:
    assert "value" not in env[name], f"{name} must come from a Secret"
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def decoded(secret: Manifest) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def pod_annotations(manifests: list[Manifest]) -> dict[str, str]:
    annotations: dict[str, str] = only(manifests, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    return annotations


def test_environment_is_production_with_json_logs(minimal_manifests: list[Manifest]) -> None:
    env = env_of(only(minimal_manifests, "Deployment"))
    assert env["TURNSTILE_ENV"]["value"] == "production"
    assert env["DATA_SERVICE_URL"]["value"] == "http://users-data.apps.svc:8000"
    assert env["PIPELINES_FILE"]["value"] == "/etc/turnstile/pipelines.toml"
    assert env["LOG_FORMAT"]["value"] == "json"
    assert env["LOG_LEVEL"]["value"] == "INFO"
    assert env["PORT"]["value"] == "8080"
    assert env["TURNSTILE_DRAIN_SECONDS"]["value"] == "10"
    assert "TURNSTILE_ADMIN_EMAIL" not in env
    assert "TURNSTILE_ADMIN_PASSWORD" not in env


def test_generated_secret_holds_the_urls_and_the_given_jwt_secret(
    minimal_manifests: list[Manifest], minimal_values: dict[str, Any]
) -> None:
    env = env_of(only(minimal_manifests, "Deployment"))
    for name in ("DATA_SERVICE_TOKEN", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET"):
        assert secret_ref(env, name) == (FULLNAME, name)
    secret = only(minimal_manifests, "Secret")
    assert secret["metadata"]["name"] == FULLNAME
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = decoded(secret)
    assert data["DATA_SERVICE_TOKEN"] == minimal_values["dataService"]["token"]
    assert data["REDIS_URL"] == minimal_values["redis"]["url"]
    assert data["RABBITMQ_URL"] == minimal_values["rabbitmq"]["url"]
    assert data["JWT_SECRET"] == minimal_values["jwt"]["secret"]
    assert "TURNSTILE_ADMIN_PASSWORD" not in data


def test_without_a_cluster_a_jwt_secret_is_required_not_made_up(chart: Chart, minimal_values: dict[str, Any]) -> None:
    # `helm template` (and GitOps tools built on it) cannot look up the key a live install keeps:
    # a random one on every render would log every user out on every sync.
    values = merged(minimal_values, {"jwt": {"secret": ""}})
    with pytest.raises(HelmRenderError, match=r"jwt\.secret or jwt\.existingSecret\.name") as caught:
        render(chart, values)
    assert "helm template" in str(caught.value)


def test_a_live_install_keeps_the_generated_jwt_secret_and_generates_only_once() -> None:
    # lookup() answers nothing without a cluster, so this path is read from the template: the
    # chart's own Secret is asked first, and a random key is made only where a live namespace
    # shows (kube-root-ca.crt is in every namespace of a live cluster, never under helm template).
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    source = helpers.split('define "turnstile.jwtSource"', 1)[1].split("{{- end }}\n\n", 1)[0]
    kept = source.index('lookup "v1" "Secret" .Release.Namespace (include "turnstile.secretName" .)')
    live = source.index('lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt"')
    assert kept < live < source.index('"generate"')
    secret = (CHART_DIR / "templates" / "secret.yaml").read_text()
    assert secret.count("randAlphaNum") == 1
    assert '{{- else if eq $source "generate" }}\n{{- $jwt = randAlphaNum 64 | b64enc }}' in secret


@pytest.mark.parametrize("values_fixture", ["minimal_values", "full_values"])
def test_a_render_is_the_same_for_the_same_values(
    chart: Chart, values_fixture: str, request: pytest.FixtureRequest
) -> None:
    values: dict[str, Any] = request.getfixturevalue(values_fixture)
    assert render(chart, values) == render(chart, values)


def test_a_changed_secret_value_rolls_the_pods(chart: Chart, minimal_values: dict[str, Any]) -> None:
    before = pod_annotations(render(chart, minimal_values))[SECRET_CHECKSUM]
    changes: list[dict[str, Any]] = [
        {"redis": {"url": "redis://redis-2.apps.svc:6379/0"}},
        {"rabbitmq": {"url": "amqps://turnstile:other@rabbitmq.apps.svc:5671/"}},
        {"dataService": {"token": "another-users-data-token-9876543210"}},
        {"jwt": {"secret": "a-rotated-jwt-secret-of-the-deploy-tests"}},
        {"admin": {"email": "root@example.com", "password": "correct horse battery"}},
        {"redis": {"existingSecret": {"name": "shared-redis", "key": "REDIS_URL"}}},
        {"mail": {"smtpUrl": "smtp+starttls://turnstile:a-new-password@smtp.example.com:587"}},
        {"mail": {"existingSecret": {"name": "mail", "key": "SMTP_URL"}}},
    ]
    for change in changes:
        after = pod_annotations(render(chart, merged(minimal_values, change)))[SECRET_CHECKSUM]
        assert after != before, f"{change} left checksum/secret unchanged"


def test_a_change_outside_the_secrets_keeps_the_secret_checksum(chart: Chart, minimal_values: dict[str, Any]) -> None:
    before = pod_annotations(render(chart, minimal_values))
    after = pod_annotations(render(chart, merged(minimal_values, {"logLevel": "DEBUG", "replicaCount": 5})))
    assert after[SECRET_CHECKSUM] == before[SECRET_CHECKSUM]
    assert after[CHECKSUM] == before[CHECKSUM]


def test_existing_secrets_are_referenced_by_name_and_key(full_manifests: list[Manifest]) -> None:
    env = env_of(only(full_manifests, "Deployment"))
    assert secret_ref(env, "DATA_SERVICE_TOKEN") == ("turnstile-data-service", "token")
    assert secret_ref(env, "REDIS_URL") == ("turnstile-redis", "url")
    assert secret_ref(env, "RABBITMQ_URL") == ("turnstile-rabbitmq", "url")
    assert secret_ref(env, "JWT_SECRET") == ("turnstile-jwt", "secret")
    assert secret_ref(env, "TURNSTILE_ADMIN_PASSWORD") == ("turnstile-admin", "password")
    assert env["TURNSTILE_ADMIN_EMAIL"]["value"] == "ops@example.com"
    assert env["TURNSTILE_DISABLE_PLUGINS"]["value"] == ""


def test_mixed_sources_put_only_the_inline_values_in_the_generated_secret(
    chart: Chart, minimal_values: dict[str, Any]
) -> None:
    values = merged(
        minimal_values,
        {
            "redis": {"existingSecret": {"name": "shared-redis", "key": "REDIS_URL"}},
            "admin": {"email": "root@example.com", "password": "correct horse battery"},
        },
    )
    manifests = render(chart, values)
    env = env_of(only(manifests, "Deployment"))
    assert secret_ref(env, "REDIS_URL") == ("shared-redis", "REDIS_URL")
    assert secret_ref(env, "TURNSTILE_ADMIN_PASSWORD") == (FULLNAME, "TURNSTILE_ADMIN_PASSWORD")
    data = decoded(only(manifests, "Secret"))
    assert set(data) == {"DATA_SERVICE_TOKEN", "JWT_SECRET", "RABBITMQ_URL", "SMTP_URL", "TURNSTILE_ADMIN_PASSWORD"}
    assert data["JWT_SECRET"] == minimal_values["jwt"]["secret"]
    assert data["TURNSTILE_ADMIN_PASSWORD"] == "correct horse battery"


def test_a_data_service_without_a_token_is_refused(chart: Chart, minimal_values: dict[str, Any]) -> None:
    # TURNSTILE_ENV=production would refuse to start: fail at `helm install` instead.
    with pytest.raises(HelmRenderError, match=r"dataService\.token or dataService\.existingSecret\.name"):
        render(chart, merged(minimal_values, {"dataService": {"token": ""}}))


def test_trusted_proxies_default_to_the_private_ranges_of_pod_networks(minimal_manifests: list[Manifest]) -> None:
    env = env_of(only(minimal_manifests, "Deployment"))
    assert env["TRUSTED_PROXIES"]["value"] == "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


def test_trusted_proxies_follow_the_value(
    chart: Chart, minimal_values: dict[str, Any], full_manifests: list[Manifest]
) -> None:
    assert env_of(only(full_manifests, "Deployment"))["TRUSTED_PROXIES"]["value"] == "10.42.0.0/16,fd00:42::/64"
    manifests = render(chart, merged(minimal_values, {"trustedProxies": []}))
    assert "TRUSTED_PROXIES" not in env_of(only(manifests, "Deployment"))


def test_an_admin_password_without_an_email_is_refused(chart: Chart, minimal_values: dict[str, Any]) -> None:
    with pytest.raises(HelmRenderError, match=r"admin\.email"):
        render(chart, merged(minimal_values, {"admin": {"password": "correct horse battery"}}))


@pytest.mark.parametrize(("values", "says"), [
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, "autoscaling.minReplicas (5) is above"),
    ({"updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}, "both 0"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}}, "no node could ever be drained"),
    ({"probes": {"liveness": {"timeoutSeconds": 20, "periodSeconds": 10}}}, "probes.liveness.timeoutSeconds (20)"),
    ({"serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "1m"}},
     "longer than serviceMonitor.interval"),
])
def test_combinations_the_api_server_refuses_or_that_stall_a_drain_are_refused(
    chart: Chart, minimal_values: dict[str, Any], values: dict[str, Any], says: str
) -> None:
    with pytest.raises(HelmRenderError, match=re.escape(says)):
        render(chart, merged(minimal_values, values))


def test_a_scrape_timeout_within_the_interval_renders(chart: Chart, minimal_values: dict[str, Any]) -> None:
    monitor = {"enabled": True, "interval": "1m", "scrapeTimeout": "30s"}
    assert only(render(chart, merged(minimal_values, {"serviceMonitor": monitor})), "ServiceMonitor")


@pytest.mark.parametrize(("variable", "instead"), [
    ("SMTP_URL", "mail.smtpUrl or mail.existingSecret"), ("REDIS_URL", "redis.url or redis.existingSecret"),
    ("LOG_LEVEL", "logLevel"), ("ARGON2_MEMORY_KIB", "passwordHashing.argon2MemoryKib"),
])
def test_a_variable_the_chart_sets_is_refused_in_extra_env(
    chart: Chart, minimal_values: dict[str, Any], variable: str, instead: str
) -> None:
    # Kubernetes keeps the last of two: a plain SMTP_URL shadowed the chart's, its password in the
    # Deployment for anyone who may read it.
    extra = {"extraEnv": [{"name": variable, "value": "smtp://user:password@mail.example:587"}]}
    with pytest.raises((HelmRenderError, HelmValuesError)) as caught:
        render(chart, merged(minimal_values, extra))
    if variable != "ARGON2_MEMORY_KIB":  # that one the schema refuses first
        assert f"extraEnv sets {variable}, which the chart sets itself: use {instead} instead" in str(caught.value)


def test_every_variable_the_chart_sets_is_one_extra_env_may_not_set(
    chart: Chart, full_values: dict[str, Any], full_manifests: list[Manifest]
) -> None:
    # The list of names in _helpers.tpl is written beside the Deployment's env: one forgotten
    # there would let extraEnv shadow the chart's value again.
    own = {entry["name"] for entry in full_values.get("extraEnv", [])}
    set_by_chart = sorted(set(env_of(only(full_manifests, "Deployment"))) - own)
    assert "SMTP_URL" in set_by_chart
    extra = full_values.get("extraEnv", [])
    for name in set_by_chart:
        values = merged(full_values, {"extraEnv": [*extra, {"name": name, "value": "x"}]})
        # the chart's message names it; the schema (ARGON2_*) names the entry
        with pytest.raises((HelmRenderError, HelmValuesError), match=rf"{name}|/extraEnv/{len(extra)}/name"):
            render(chart, values)


def test_a_variable_the_chart_sets_only_when_told_is_free_in_extra_env_until_then(
    chart: Chart, minimal_values: dict[str, Any]
) -> None:
    # RS256 keys mounted by hand name their previous public keys themselves.
    extra = {"extraEnv": [{"name": "JWT_PREVIOUS_PUBLIC_KEYS_FILE", "value": "/etc/keys/previous.pem"},
                          {"name": "TRUSTED_PROXIES", "value": "10.0.0.0/8"}]}
    render(chart, merged(minimal_values, {**extra, "trustedProxies": []}))
    with pytest.raises(HelmRenderError, match="extraEnv sets TRUSTED_PROXIES, which the chart sets itself"):
        render(chart, merged(minimal_values, {**extra, "trustedProxies": ["10.1.0.0/16"]}))


@pytest.mark.parametrize("variable", ["JWT_SECRET_FILE", "DATA_SERVICE_TOKEN_FILE", "SMTP_URL_FILE"])
def test_a_file_twin_of_a_secret_the_chart_sets_is_refused(
    chart: Chart, minimal_values: dict[str, Any], variable: str
) -> None:
    # Turnstile refuses NAME and NAME_FILE together: the pods would crash-loop after the upgrade.
    extra = {"extraEnv": [{"name": variable, "value": "/var/run/secrets/x"}]}
    with pytest.raises(HelmRenderError, match=rf"extraEnv sets {variable}, but the chart already sets "):
        render(chart, merged(minimal_values, extra))


def test_the_admin_passwords_file_is_refused_only_beside_the_charts_admin_password(
    chart: Chart, minimal_values: dict[str, Any]
) -> None:
    extra = {"extraEnv": [{"name": "TURNSTILE_ADMIN_PASSWORD_FILE", "value": "/var/run/secrets/admin"},
                          {"name": "TURNSTILE_ADMIN_EMAIL_X", "value": "unrelated"}]}
    render(chart, merged(minimal_values, extra))  # the chart sets no admin password: the file is the one
    with pytest.raises(HelmRenderError, match="TURNSTILE_ADMIN_PASSWORD_FILE"):
        render(chart, merged(minimal_values, {**extra, "admin": {"email": "a@example.com", "password": "pw pw pw pw"}}))


def test_chart_pipelines_are_mounted_with_their_checksum(minimal_manifests: list[Manifest]) -> None:
    shipped = (CHART_DIR / "files" / "pipelines.toml").read_text()
    config_map = only(minimal_manifests, "ConfigMap")
    assert config_map["metadata"]["name"] == f"{FULLNAME}-pipelines"
    assert config_map["data"]["pipelines.toml"] == shipped
    expected = hashlib.sha256(shipped.encode()).hexdigest()
    assert pod_annotations(minimal_manifests)[CHECKSUM] == expected


def test_checksum_changes_with_the_pipelines_content(
    chart: Chart, minimal_values: dict[str, Any], minimal_manifests: list[Manifest]
) -> None:
    # leading indentation and a missing final newline must survive byte for byte
    content = '  [[pipelines]]\nname = "health"\nroute = "GET /api/v1/ping"\nsteps = []'
    manifests = render(chart, merged(minimal_values, {"pipelines": {"content": content}}))
    assert only(manifests, "ConfigMap")["data"]["pipelines.toml"] == content
    checksum = pod_annotations(manifests)[CHECKSUM]
    assert checksum == hashlib.sha256(content.encode()).hexdigest()
    assert checksum != pod_annotations(minimal_manifests)[CHECKSUM]


def test_an_existing_config_map_replaces_the_charts(chart: Chart, minimal_values: dict[str, Any]) -> None:
    manifests = render(chart, merged(minimal_values, {"pipelines": {"existingConfigMap": "team-pipelines"}}))
    assert "ConfigMap" not in kinds(manifests)
    volumes = only(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "team-pipelines", "items": [{"key": "pipelines.toml", "path": "pipelines.toml"}]} in [
        v.get("configMap") for v in volumes
    ]
    # without a cluster there is nothing to hash, and no empty checksum is made up
    assert CHECKSUM not in pod_annotations(manifests)


def test_pod_and_deployment_annotations_from_values_sit_beside_the_checksums(full_manifests: list[Manifest]) -> None:
    annotations = pod_annotations(full_manifests)
    assert annotations["example.com/team"] == "identity"
    assert {CHECKSUM, SECRET_CHECKSUM} <= set(annotations)
    assert only(full_manifests, "Deployment")["metadata"]["annotations"] == {"example.com/owner": "identity"}


def test_extra_env_and_env_from_reach_the_container(full_manifests: list[Manifest]) -> None:
    env = env_of(only(full_manifests, "Deployment"))
    assert env["JWT_ALGORITHM"]["value"] == "RS256"
    assert env["JWT_PRIVATE_KEY_FILE"]["value"] == "/etc/turnstile-keys/private.pem"
    assert env["SMTP_URL"]["valueFrom"] == {"secretKeyRef": {"name": "turnstile-smtp", "key": "url"}}
    container = only(full_manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "turnstile-tuning"}}]


def test_mail_settings_reach_the_pod_and_the_smtp_url_stays_in_a_secret(
    minimal_manifests: list[Manifest], minimal_values: dict[str, Any]
) -> None:
    env = env_of(only(minimal_manifests, "Deployment"))
    assert secret_ref(env, "SMTP_URL") == (FULLNAME, "SMTP_URL")
    assert decoded(only(minimal_manifests, "Secret"))["SMTP_URL"] == minimal_values["mail"]["smtpUrl"]
    assert env["MAIL_FROM"]["value"] == minimal_values["mail"]["from"]
    assert env["PUBLIC_URL"]["value"] == minimal_values["mail"]["publicUrl"]
    assert "MAIL_TEMPLATES_DIR" not in env


def test_a_templates_config_map_is_mounted_for_the_mail_plugin(full_manifests: list[Manifest]) -> None:
    deployment = only(full_manifests, "Deployment")
    env = env_of(deployment)
    assert secret_ref(env, "SMTP_URL") == ("turnstile-smtp", "url")
    assert env["MAIL_TEMPLATES_DIR"]["value"] == "/etc/turnstile-mail-templates"
    pod = deployment["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "mail-templates"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/turnstile-mail-templates", True)
    [volume] = [v for v in pod["volumes"] if v["name"] == "mail-templates"]
    assert volume["configMap"]["name"] == "turnstile-mail-templates"


def test_mail_without_a_server_sender_or_public_url_is_refused(chart: Chart, minimal_values: dict[str, Any]) -> None:
    # TURNSTILE_ENV=production would refuse to start: fail at `helm install` instead.
    values = merged(minimal_values, {"mail": {"smtpUrl": "", "from": "", "publicUrl": ""}})
    with pytest.raises(HelmRenderError) as caught:
        render(chart, values)
    for setting in ("mail.smtpUrl or mail.existingSecret.name (SMTP_URL)", "mail.from (MAIL_FROM)",
                    "mail.publicUrl (PUBLIC_URL)"):
        assert setting in str(caught.value)
