"""The chart's `helm test` script, run as rendered against a live service: it passes only when the
data service, Redis and RabbitMQ all answer, not merely when the process is up."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.dataservice import start_dataservice
from app.keys import readiness_key
from app.readiness import Phase
from tests.deploy.rendering import FULLNAME
from tests.integration.conftest import Client, StackFactory
from tests.integration.scrapes import closed_port_url

# The test pod's image is busybox: its tools run the script here too.
BUSYBOX_TOOLS = ("sh", "wget", "grep", "tail", "timeout")

# No start-up admin: it would need the data service these tests take away.
NO_ADMIN = {"TURNSTILE_ADMIN_EMAIL": "", "TURNSTILE_ADMIN_PASSWORD": ""}


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the script's tools are busybox's (scripts/services.sh install busybox)."""
    found = shutil.which("busybox")
    if found is None:
        msg = "busybox is not installed; run scripts/services.sh install busybox"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    tools = tmp_path_factory.mktemp("busybox")
    for tool in BUSYBOX_TOOLS:
        (tools / tool).symlink_to(found)
    return tools


def helm_test_script() -> tuple[str, str]:
    """The script of the chart's `helm test` pod and the URL it is given."""
    from tests.deploy import rendering  # the Helm SDK is optional: importorskip inside

    pod = rendering.only(rendering.render(rendering.load_chart(), rendering.REQUIRED_VALUES), "Pod")
    (container,) = pod["spec"]["containers"]
    shell, flag, script = container["command"]
    assert (shell, flag) == ("sh", "-c")
    (url,) = [entry["value"] for entry in container["env"] if entry["name"] == "TURNSTILE_URL"]
    return script, url


async def run_helm_test(client: Client, busybox: Path) -> tuple[int, str]:
    """The pod's script, run by busybox against `client`'s service, reached where the Service would be."""
    script, url = helm_test_script()
    assert url == f"http://{FULLNAME}:80"
    env = {"PATH": str(busybox), "TURNSTILE_URL": str(client.make_url("")).rstrip("/")}
    process = await asyncio.create_subprocess_exec(
        busybox / "sh", "-c", script, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def publisher_connected(client: Client) -> None:
    """`helm test` runs after `--wait`: give the publisher its moment to connect."""
    for _ in range(100):
        body: dict[str, Any] = await (await client.get("/readyz")).json()
        if body["checks"]["rabbitmq"] == "connected":
            return
        await asyncio.sleep(0.1)


async def test_passes_with_every_dependency_up(
    busybox: Path, stack: StackFactory, redis_db: str, amqp_url: str
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=amqp_url)
    await publisher_connected(client)
    code, output = await run_helm_test(client, busybox)
    assert code == 0, output
    assert '"status":"ready"' in output
    assert "a login for an unknown address got HTTP/1.1 401" in output


async def test_fails_with_a_wrong_data_service_token(
    busybox: Path, stack: StackFactory, redis_db: str, amqp_url: str, tmp_path: Path
) -> None:
    # The data service is up, it only refuses this instance's calls: /readyz's probe tells.
    runner, url = await start_dataservice(tmp_path / "guarded.sqlite3", token="the-data-service-token-0123")
    try:
        client = await stack(
            NO_ADMIN, redis_url=redis_db, rabbitmq_url=amqp_url, data_service_url=url,
            data_service_token="not-the-data-service-token",
        )
        await publisher_connected(client)
        code, output = await run_helm_test(client, busybox)
        ready = await client.get("/readyz")
        assert (ready.status, (await ready.json())["checks"]["data_service"]) == (503, "refused")
    finally:
        await runner.cleanup()
    assert code != 0, output
    assert "GET /readyz failed: not ready" in output


async def test_fails_while_the_service_is_not_ready(
    busybox: Path, stack: StackFactory, redis_db: str, amqp_url: str
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=amqp_url)
    client.app[readiness_key].phase = Phase.DRAINING
    code, output = await run_helm_test(client, busybox)
    assert code != 0, output
    assert "GET /readyz failed: not ready" in output


@pytest.mark.parametrize(
    ("down", "complaint"),
    [
        pytest.param({"redis_url": closed_port_url("redis://", "/0")}, "Redis does not answer", id="redis"),
        pytest.param(
            {"rabbitmq_url": closed_port_url("amqp://guest:guest@", "/")},
            "the event publisher is not connected to RabbitMQ",
            id="rabbitmq",
        ),
        pytest.param(
            {"data_service_url": closed_port_url("http://"), "env": NO_ADMIN},
            "GET /readyz failed: not ready",  # /readyz probes the data service (app/clients/reachability.py)
            id="data-service",
        ),
    ],
)
async def test_fails_when_a_dependency_is_down(
    busybox: Path, stack: StackFactory, redis_db: str, amqp_url: str, *, down: dict[str, Any], complaint: str
) -> None:
    client = await stack(**{"redis_url": redis_db, "rabbitmq_url": amqp_url, **down})
    code, output = await run_helm_test(client, busybox)
    assert code != 0, output
    assert complaint in output
