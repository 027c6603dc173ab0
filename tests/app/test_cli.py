"""Each CLI command as a user runs it: a real process, its exit code and its output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import CORE_PIPELINES
from tests.services import ROOT, TEST_PYTHONPATH

BUILT_INS = "auth,rate-limit,cache,data-fetch,event-emit,users,mail,accounts"
# The core's commands run with the sample plugin alone: no built-in, nor the example team
# plugin (examples/acme-plugin) the test command installs.
INSTALLED = f"{BUILT_INS},acme"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RABBITMQ_URL", "DATA_SERVICE_URL")}
    env.update(
        TURNSTILE_PLUGINS="tests.fixtures.sample_plugin",
        TURNSTILE_DISABLE_PLUGINS=INSTALLED,
        PIPELINES_FILE=str(CORE_PIPELINES),
        TURNSTILE_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=TEST_PYTHONPATH,
    )
    env.update(extra)
    return env


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60,
        env=cli_env(tmp_path, **env), cwd=ROOT, check=False,
    )


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    result = run(tmp_path, "check", str(CORE_PIPELINES))
    assert result.returncode == 0, result.stderr
    assert "OK (5 pipelines" in result.stdout


@pytest.mark.parametrize(
    ("plugins", "expected"),
    [
        ("tests.fixtures.async_load_plugin", "turnstile: plugin tests.fixtures.async_load_plugin: register_steps "
         "must be a plain def, not async def: it runs once, while the app is put together, where nothing awaits it\n"),
        ("tests.fixtures.no_such_plugin", "turnstile: TURNSTILE_PLUGINS: 'tests.fixtures.no_such_plugin' cannot be "
         "imported: ModuleNotFoundError: No module named 'tests.fixtures.no_such_plugin'\n"),
    ],
)
def test_a_plugin_that_cannot_load_is_one_line_naming_it(tmp_path: Path, plugins: str, expected: str) -> None:
    result = run(tmp_path, "check", TURNSTILE_PLUGINS=plugins)
    assert result.returncode == 2
    assert result.stderr == expected


def test_check_builds_the_steps_as_start_up_does(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    steps = 'steps = [{ use = "fragile" }, { use = "echo" }]'
    pipelines.write_text(f'[[pipelines]]\nname = "a"\nroute = "GET /a"\n{steps}\n')
    plugins = "tests.fixtures.sample_plugin,tests.fixtures.fragile_build_plugin"
    result = run(tmp_path, "check", str(pipelines), TURNSTILE_PLUGINS=plugins)
    assert result.returncode == 1
    assert result.stderr.endswith(
        f"{pipelines}:4: pipeline 'a', step 1 (fragile): plugin tests.fixtures.fragile_build_plugin could not "
        "build it: RuntimeError: cannot build\n"
    )


def test_a_load_time_hook_that_raises_is_one_line_naming_the_plugin(tmp_path: Path) -> None:
    result = run(tmp_path, "check", TURNSTILE_PLUGINS="tests.fixtures.broken_route_plugin")
    assert result.returncode == 1
    assert result.stderr == (
        f"{CORE_PIPELINES}: plugin tests.fixtures.broken_route_plugin: register_routes raised TypeError: "
        "PluginRoute.__init__() missing 1 required keyword-only argument: 'responses'\n"
    )


def test_a_plugin_command_written_async_is_run_and_its_result_is_the_status(tmp_path: Path) -> None:
    # It printed the coroutine and exited 1, never run.
    result = run(tmp_path, "sample-async")
    assert (result.returncode, result.stdout) == (3, "counted down\n")
    assert "coroutine" not in result.stderr


@pytest.mark.parametrize("command", ["check", "plugins"])
def test_two_plugins_adding_one_step_type_are_one_line_naming_both(tmp_path: Path, command: str) -> None:
    # `plugins` printed a traceback, `check` the clash at line 0 of a file that has no part in it.
    result = run(tmp_path, command, TURNSTILE_PLUGINS="tests.fixtures.sample_plugin,tests.fixtures.echo_again_plugin")
    assert result.returncode == (1 if command == "check" else 2)
    assert "Traceback" not in result.stderr
    assert "step type 'echo' is added by both tests.fixtures.sample_plugin and tests.fixtures.echo_again_plugin" \
        in result.stderr
    assert ":0:" not in result.stderr


def test_check_reports_every_error_with_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[[pipelines]]\nname = "a"\nroute = "GET /a"\nsteps = [{ use = "nope" }, { use = "echo", x = 1 }]\n'
    )
    result = run(tmp_path, "check", str(broken))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{broken}:4: pipeline 'a', step 1: unknown step type 'nope' (known: answer, boom, echo, silent, sleep, tag)",
        f"{broken}:4: pipeline 'a', step 2 (echo): x: unknown setting 'x'",
    ]


def test_check_refuses_bad_settings_with_one_line_each(tmp_path: Path) -> None:
    result = run(tmp_path, "check", PORT="nope", LOG_LEVEL="LOUD")
    assert result.returncode == 2
    assert "PORT='nope': expected a port number 1-65535" in result.stderr
    assert "LOG_LEVEL='LOUD'" in result.stderr


def test_routes_lists_steps_with_their_lines(tmp_path: Path) -> None:
    result = run(tmp_path, "routes")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "echo_widget" in line)
    assert line.split()[:3] == ["POST", "/widgets/{slot}", "echo_widget"]
    assert f"tag@{CORE_PIPELINES}:10 -> tag@{CORE_PIPELINES}:11 -> echo@{CORE_PIPELINES}:12" in line


def test_plugins_lists_hooks_step_types_and_offered_hook_specs(tmp_path: Path) -> None:
    result = run(tmp_path, "plugins")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("tests.fixtures.sample_plugin"))
    assert "check_request" in line
    assert "answer,boom,echo,silent,sleep,tag" in line
    assert "Widget" in line
    assert any(line.startswith("auth") and "(disabled)" in line for line in result.stdout.splitlines())
    # The hook the sample plugin offers other plugins, with the first line of its docstring.
    spec = next(line for line in result.stdout.splitlines() if "echo_extras" in line)
    assert spec.split()[:2] == ["tests.fixtures.sample_plugin", "echo_extras"]
    assert "Return fields to add to the echo step's answer" in spec


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path: Path) -> None:
    # `turnstile openapi | head`: the pipe closes before the document is written.
    proc = subprocess.Popen([sys.executable, "-m", "app", "openapi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(tmp_path), cwd=ROOT)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err == b""


@pytest.mark.parametrize(("option", "value"), [("--workers", "0"), ("--port", "99999"), ("--port", "http")])
def test_serve_refuses_options_it_cannot_use(tmp_path: Path, option: str, value: str) -> None:
    result = run(tmp_path, "serve", option, value)
    assert result.returncode == 2
    assert f"argument {option}: expected" in result.stderr


def test_a_misspelt_plugin_to_disable_is_a_start_up_error(tmp_path: Path) -> None:
    # It disabled nothing, and said nothing: the runbook's fix for a plugin that misbehaves.
    result = run(tmp_path, "check", TURNSTILE_DISABLE_PLUGINS=f"{INSTALLED},acmee")
    assert result.returncode == 2
    assert "TURNSTILE_DISABLE_PLUGINS: 'acmee' is not an installed plugin" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_step_type_or_model_of_a_disabled_plugin_is_named_with_the_plugin_that_adds_it(tmp_path: Path) -> None:
    # "unknown step type 'cache'" sent an operator who disabled the cache plugin looking for a typo.
    # A plugin of TURNSTILE_PLUGINS (a module, not an entry point) is named the same way.
    result = run(tmp_path, "check", TURNSTILE_DISABLE_PLUGINS="cache,tests.fixtures.sample_plugin",
                 PIPELINES_FILE=str(ROOT / "pipelines.toml"))
    assert result.returncode == 1
    assert "step 2: step type 'cache' is added by plugin 'cache'" in result.stderr
    result = run(tmp_path, "check", TURNSTILE_DISABLE_PLUGINS="cache,tests.fixtures.sample_plugin")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.endswith("step type 'echo' is added by plugin 'tests.fixtures.sample_plugin', which "
                             "TURNSTILE_DISABLE_PLUGINS disables") for line in lines), result.stderr
    assert any(line.endswith("body model 'Widget' is added by plugin 'tests.fixtures.sample_plugin', which "
                             "TURNSTILE_DISABLE_PLUGINS disables") for line in lines), result.stderr
    assert "unknown step type" not in result.stderr
    assert "is not registered" not in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_lists_each_plugins_settings_and_resources_never_a_secret(tmp_path: Path) -> None:
    secret = "a-jwt-secret-nobody-may-see-0123456789"
    result = run(tmp_path, "plugins", TURNSTILE_DISABLE_PLUGINS="", JWT_SECRET=secret,
                 TURNSTILE_ADMIN_PASSWORD="an admin password")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[_row(rows, "JWT_SECRET")][:5] == ["auth", "JWT_SECRET", "or", "JWT_SECRET_FILE", "(secret)"]
    assert rows[_row(rows, "JWT_ALGORITHM")][:5] == ["auth", "JWT_ALGORITHM", "HS256", "one", "of"]
    assert rows[_row(rows, "ARGON2_TIME_COST")][:3] == ["auth", "ARGON2_TIME_COST", "3"]
    assert rows[_row(rows, "TURNSTILE_ADMIN_EMAIL")][0] == "users"
    assert rows[_row(rows, "password_hasher")][:3] == ["auth", "object", "password_hasher"]
    assert rows[_row(rows, "cache_backend")][:3] == ["cache", "object", "cache_backend"]
    assert rows[_row(rows, "create-admin")][:3] == ["users", "turnstile", "create-admin"]
    assert secret not in result.stdout
    assert "an admin password" not in result.stdout


def _row(rows: list[list[str]], word: str) -> int:
    return next(i for i, row in enumerate(rows) if word in row)


def test_openapi_prints_a_valid_document(tmp_path: Path) -> None:
    result = run(tmp_path, "openapi")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    validate(doc)
    assert "/widgets/{slot}" in doc["paths"]


def test_a_route_whose_step_documents_no_answer_still_has_a_success_response(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text('[[pipelines]]\nname = "quiet"\nroute = "GET /quiet"\nsteps = [{ use = "silent" }]\n')
    result = run(tmp_path, "openapi", "--pipelines", str(pipelines))
    assert result.returncode == 0, result.stderr
    responses = json.loads(result.stdout)["paths"]["/quiet"]["get"]["responses"]
    assert responses["200"]["description"] == "Success (its step type documents no answer)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env(tmp_path, TURNSTILE_DRAIN_SECONDS="1"), cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    yield proc, base
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


async def test_serve_answers_health_docs_and_problem_404(server: tuple[subprocess.Popen[str], str]) -> None:
    _proc, base = server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/docs") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/missing", headers={"X-Request-ID": "cli-1"}) as resp:
            assert resp.status == 404
            assert resp.content_type == "application/problem+json"
            assert (await resp.json(content_type=None))["request_id"] == "cli-1"


@pytest.mark.timeout(60)
async def test_sigterm_drains_and_in_flight_request_completes(server: tuple[subprocess.Popen[str], str]) -> None:
    proc, base = server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
        slow = asyncio.ensure_future(http.get(f"{base}/slow"))
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["status"] == "draining"
        resp = await slow
        assert resp.status == 200
        resp.release()
    assert await asyncio.to_thread(proc.wait, 20) == 0
    assert proc.stdout is not None
    output = proc.stdout.read()
    assert "draining" in output
    assert "GET /slow 200 pipeline=slow" in output


def test_workers_need_external_state(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--workers", "2")
    assert result.returncode == 2
    assert "--workers 2 needs DATA_SERVICE_URL and REDIS_URL" in result.stderr


OPERATIONAL = ("healthz", "readyz", "metrics")


async def answered_by_pipelines(metrics: str) -> float:
    """The requests the pipelines answered, as a scrape counts them (not the operational routes')."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics) if family.name == "turnstile_requests"
        for sample in family.samples
        if sample.name == "turnstile_requests_total" and sample.labels["pipeline"] not in OPERATIONAL
    )


@pytest.mark.timeout(90)
async def test_workers_share_the_port_and_stop_together(tmp_path: Path, redis_url: str) -> None:
    data_port, port = free_port(), free_port()
    env = cli_env(tmp_path, REDIS_URL=redis_url, DATA_SERVICE_URL=f"http://127.0.0.1:{data_port}",
                  TURNSTILE_DRAIN_SECONDS="0.2")
    data = subprocess.Popen(
        [sys.executable, "-m", "app", "dataservice", "--port", str(data_port), "--db", str(tmp_path / "d.sqlite3")],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    workers = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "workers did not become ready"
                await asyncio.sleep(0.2)
            for _ in range(20):  # each on a connection of its own, so the kernel spreads them
                async with http.get(f"http://127.0.0.1:{port}/things/x", headers={"Connection": "close"}) as resp:
                    assert resp.status == 200
            # Whichever worker a scrape reaches, it counts every worker's requests.
            for _ in range(6):
                async with http.get(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"}) as resp:
                    assert await answered_by_pipelines(await resp.text()) == 20
        children = subprocess.run(["pgrep", "-P", str(workers.pid)], capture_output=True, text=True, check=False)
        assert len(children.stdout.split()) == 2
        workers.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(workers.wait, 30) == 0
    finally:
        for proc in (workers, data):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def test_serve_refuses_to_start_on_a_broken_pipelines_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[[pipelines]]\nname = "a"\nroute = "GET /a"\nsteps = [{ use = "nope" }]\n')
    result = run(tmp_path, "serve", "--port", str(free_port()), "--pipelines", str(broken))
    assert result.returncode == 1
    assert f"{broken}:4: pipeline 'a', step 1: unknown step type 'nope'" in result.stderr


def test_a_connection_that_never_finishes_its_request_is_closed(tmp_path: Path) -> None:
    # Slowloris: headers trickled, never ended. aiohttp alone waits an hour; the keep-alive
    # timeout bounds it, and an idle connection after an answer likewise.
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env(tmp_path, TURNSTILE_KEEPALIVE_TIMEOUT_S="1", TURNSTILE_DRAIN_SECONDS="1"), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=15) as slow, \
                socket.create_connection(("127.0.0.1", port), timeout=15) as idle:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trickle: a")
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200")
            assert slow.recv(4096) == b""  # closed by the server, well before the socket's 15 s
            assert idle.recv(4096) == b""
    finally:
        proc.terminate()
        proc.wait(20)


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert f"turnstile: cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr  # what start-up opened was closed


def test_serve_refuses_production_without_its_services(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", TURNSTILE_ENV="production")
    assert result.returncode == 2
    assert "turnstile: REDIS_URL: required when TURNSTILE_ENV=production" in result.stderr


async def test_the_data_service_starts_in_production_without_the_servers_services(tmp_path: Path) -> None:
    # It reads none of them (Redis, the broker, the JWT secret, mail): they are no reason to refuse.
    port = free_port()
    (tmp_path / "token").write_text("data-service-token-0123456789abcdef")
    env = cli_env(tmp_path, TURNSTILE_ENV="production", TURNSTILE_DISABLE_PLUGINS="")
    data = subprocess.Popen(
        [sys.executable, "-m", "app", "dataservice", "--port", str(port), "--db", str(tmp_path / "d.sqlite3"),
         "--token-file", str(tmp_path / "token")],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert data.poll() is None, "the data service stopped"
                try:
                    async with http.get(f"http://127.0.0.1:{port}/api/v1/users/1") as resp:
                        assert resp.status == 401  # it runs, and wants its token
                        break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, "the data service did not start"
                    await asyncio.sleep(0.2)
    finally:
        data.terminate()
        data.wait(timeout=10)


def test_the_data_service_refuses_to_run_without_a_token_in_production(tmp_path: Path) -> None:
    result = run(tmp_path, "dataservice", "--port", str(free_port()), "--db", str(tmp_path / "d.sqlite3"),
                 TURNSTILE_ENV="production", TURNSTILE_DISABLE_PLUGINS="")
    assert result.returncode == 2
    assert "dataservice: a token is required when TURNSTILE_ENV=production" in result.stderr


def test_create_admin_creates_then_is_idempotent(tmp_path: Path) -> None:
    # The users plugin adds the command; the auth plugin hashes the password.
    env = {"TURNSTILE_ADMIN_PASSWORD": "boss-password-1", "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8",
           "ARGON2_PARALLELISM": "1", "TURNSTILE_DISABLE_PLUGINS": ""}
    first = run(tmp_path, "create-admin", "--email", "Boss@Example.com", **env)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    again = run(tmp_path, "create-admin", "--email", "boss@example.com", **env)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout


def test_a_failing_startup_hook_stops_the_server_naming_the_plugin(tmp_path: Path) -> None:
    plugins = "tests.fixtures.sample_plugin,tests.fixtures.failing_startup_plugin"
    result = run(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(free_port()), TURNSTILE_PLUGINS=plugins)
    assert result.returncode == 2
    assert result.stderr.endswith(
        "turnstile: plugin tests.fixtures.failing_startup_plugin: its startup hook failed: "
        "RuntimeError: cannot warm up\n"
    )
    assert "startup hook of plugin tests.fixtures.failing_startup_plugin failed" in result.stderr  # with its traceback
