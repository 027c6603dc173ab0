"""`[upstreams.NAME]` tables: `${VAR}` from the environment, every mistake at its FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

import plugins.data_fetch
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked
from app.pipeline.types import PipelineFile, UpstreamConfig
from app.plugins import make_plugin_manager
from tests.app.test_cli import run

PM = make_plugin_manager(entrypoints=False, extra=[plugins.data_fetch])

BILLING = """\
[upstreams.billing]
url = "${BILLING_URL}/v1"
token = "${BILLING_TOKEN}"
timeout_s = 2
retries = 1

[[pipelines]]
name = "get_invoice"
route = "GET /invoices/{id:int}"
steps = [{ use = "data-fetch", call = "GET /invoices/{id}", upstream = "billing" }]
"""


def load(tmp_path: Path, text: str, environ: dict[str, str]) -> PipelineFile:
    path = tmp_path / "pipelines.toml"
    path.write_text(text)
    return load_checked(path, PM, environ)[1]


def errors(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(PipelineFileError) as info:
        load(tmp_path, text, environ or {})
    return [str(e).split(":", 1)[1] for e in info.value.errors]


def test_variables_come_from_the_environment(tmp_path: Path) -> None:
    file = load(tmp_path, BILLING, {"BILLING_URL": "http://billing.internal:8443", "BILLING_TOKEN": "s3cret-t0ken"})
    assert file.upstreams == (UpstreamConfig(
        name="billing", url="http://billing.internal:8443/v1", token="s3cret-t0ken", timeout_s=2.0, retries=1, line=1,
    ),)
    assert "s3cret" not in repr(file.upstreams)  # the token stays out of every repr (and so of logs)
    assert file.pipelines[0].steps[0].config.upstream == "billing"


def test_a_missing_variable_is_an_error_at_its_line(tmp_path: Path) -> None:
    assert errors(tmp_path, BILLING, {"BILLING_TOKEN": ""}) == [
        "2: upstream 'billing': url: environment variable BILLING_URL is not set",
        "3: upstream 'billing': token: environment variable BILLING_TOKEN is not set",
    ]


def test_an_unknown_upstream_is_an_error_at_the_step(tmp_path: Path) -> None:
    text = BILLING.replace('upstream = "billing"', 'upstream = "biling"')
    assert errors(tmp_path, text, {"BILLING_URL": "http://b", "BILLING_TOKEN": "t"}) == [
        "10: pipeline 'get_invoice', step 1 (data-fetch): upstream: 'biling' is not declared by an "
        "[upstreams.NAME] table (known: billing, data_service)",
    ]


def test_bad_values_are_reported_without_what_the_environment_held(tmp_path: Path) -> None:
    text = """\
[upstreams.data_service]
url = "http://elsewhere"

[upstreams.Billing]
url = "${URL}"
token = "${TOKEN}"

[upstreams.ledger]
url = "http://ledger/?v=1"
"""
    found = errors(tmp_path, text, {"URL": "ftp://user:hunter2@files", "TOKEN": "not a token"})
    assert found == [
        "1: upstream 'data_service': this name is the data service's, set by DATA_SERVICE_URL; choose another",
        "4: upstream 'Billing': the name must be lower_snake_case",
        "5: upstream 'Billing': url must be an absolute http(s) URL without query or fragment, such as "
        "'https://billing.internal:8443', got '${URL}'",
        "6: upstream 'Billing': token is not a valid bearer token (RFC 6750: letters, digits and -._~+/ then any '=')",
        "9: upstream 'ledger': url must be an absolute http(s) URL without query or fragment, such as "
        "'https://billing.internal:8443', got 'http://ledger/?v=1'",
    ]
    assert not any("hunter2" in line or "not a token" in line for line in found)


def test_unknown_and_ill_typed_upstream_settings(tmp_path: Path) -> None:
    text = '[upstreams.billing]\nurl = "http://b"\ncolour = "red"\n'
    assert errors(tmp_path, text) == ["3: upstreams.billing.colour: unknown setting 'colour'"]
    text = '[upstreams.billing]\nurl = "http://b"\ntimeout_s = "2"\n'
    assert errors(tmp_path, text) == ["3: upstreams.billing.timeout_s: expected a number, got '2'"]
    text = '[upstreams.billing]\nurl = "http://b"\nretries = 11\n'
    assert errors(tmp_path, text) == ["1: upstreams.billing: 'retries' must be <= 10: 11"]


def test_turnstile_check_prints_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text(BILLING.replace('upstream = "billing"', 'upstream = "ledger"'))
    result = run(tmp_path, "check", str(path), TURNSTILE_DISABLE_PLUGINS="", BILLING_TOKEN="t0ken")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: upstream 'billing': url: environment variable BILLING_URL is not set",
        f"{path}:10: pipeline 'get_invoice', step 1 (data-fetch): upstream: 'ledger' is not declared by an "
        "[upstreams.NAME] table (known: billing, data_service)",
    ]
    result = run(tmp_path, "check", str(path), TURNSTILE_DISABLE_PLUGINS="", BILLING_URL="http://127.0.0.1:1",
                 BILLING_TOKEN="t0ken")
    assert result.returncode == 1
    path.write_text(BILLING)
    result = run(tmp_path, "check", str(path), TURNSTILE_DISABLE_PLUGINS="", BILLING_URL="http://127.0.0.1:1",
                 BILLING_TOKEN="t0ken")
    assert result.returncode == 0, result.stderr
