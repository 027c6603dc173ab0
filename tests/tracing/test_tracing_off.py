"""Tracing is off unless an OTLP endpoint is set (contract §3, §15), and then it costs
nothing: no provider, no instrumentation, no exporter thread, no span per request; the SDK
and the exporter are not even imported. A protocol this service does not ship is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import coredis
import pytest
from opentelemetry import trace

from app.tracing import app_tracer, tracing_requested
from tests.integration.conftest import StackFactory, bearer, login, register
from tests.services import ROOT
from tests.tracing.conftest import service_env

CORE_MIDDLEWARES = ["request_id_middleware", "observe_middleware", "headers_middleware", "error_middleware"]


@pytest.fixture
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_otel_variables")
async def test_without_an_endpoint_nothing_is_installed_and_no_span_is_made(stack: StackFactory) -> None:
    client = await stack()
    user = await register(client, "ann@example.com")
    headers = bearer(await login(client, "ann@example.com", "correct-horse-1"))
    for _ in range(2):
        assert (await client.get(f"/api/v1/users/{user['id']}", headers=headers)).status == 200

    app = client.app
    assert app is not None
    assert app_tracer(app) is None  # so the step wrappers were built without spans
    assert [getattr(m, "__name__", repr(m)) for m in app.middlewares] == CORE_MIDDLEWARES
    # The API's own default: a proxy with nothing behind it, whose spans are all the one no-op span.
    assert type(trace.get_tracer_provider()) is trace.ProxyTracerProvider
    assert not trace.get_current_span().get_span_context().is_valid
    assert not [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")]
    assert not hasattr(aiohttp.ClientSession.__init__, "__wrapped__")  # the client instrumentation's wrapper
    assert coredis.Config.otel_enabled is False


BUILD_AND_LIST = """
import json, sys
from app.main import create_app
from app.settings import load_settings
from opentelemetry import trace
create_app(load_settings())
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter",
                                                        "opentelemetry.instrumentation", "google.protobuf")))
print(json.dumps({"loaded": loaded, "provider": type(trace.get_tracer_provider()).__name__}))
"""


@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:9"])
def test_the_sdk_and_exporter_are_imported_only_when_tracing_is_on(tmp_path: Path, endpoint: str | None) -> None:
    env = service_env(tmp_path, PIPELINES_FILE=str(ROOT / "pipelines.toml"))
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    done = subprocess.run(
        [sys.executable, "-c", BUILD_AND_LIST], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    if endpoint is None:
        assert result == {"loaded": [], "provider": "ProxyTracerProvider"}
    else:
        assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in result["loaded"]
        assert result["provider"] == "TracerProvider"


def test_only_the_shipped_otlp_protocol_is_accepted(tmp_path: Path) -> None:
    env = service_env(
        tmp_path,
        PIPELINES_FILE=str(ROOT / "pipelines.toml"),
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
    )
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "0"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "turnstile: OTEL_EXPORTER_OTLP_PROTOCOL='grpc': this service ships only the http/protobuf" in done.stderr


def test_the_standard_variables_turn_tracing_on_and_off() -> None:
    endpoint = "http://collector:4318"
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{endpoint}/v1/traces"})
    assert not tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert not tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_EXPORTER": "none"})
