"""The events' docs as users meet them: the AsyncAPI document at /api/docs/asyncapi.json (the
same one `turnstile asyncapi` prints), the page at /api/docs/events with its vendored assets,
and real events on RabbitMQ that match the document's schemas."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiormq.abc import DeliveredMessage
from jsonschema import Draft7Validator
from openapi_spec_validator import validate

from app.asyncapi.page import STATIC_DIR
from tests.asyncapi.conftest import audit_queue
from tests.integration.amqp_capture import body_of, capture, next_message, remove_topology
from tests.integration.conftest import StackFactory, admin_headers, assert_problem, bearer, login, register
from tests.services import ROOT, TEST_PYTHONPATH

AUDIT_PLUGIN = "tests.asyncapi.audit_plugin"


async def cli_asyncapi(tmp_path: Path, pipelines: Path, exchange: str) -> dict[str, Any]:
    """What `turnstile asyncapi` prints, run as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RABBITMQ_URL", "DATA_SERVICE_URL")}
    env.update(PIPELINES_FILE=str(pipelines), EVENTS_EXCHANGE=exchange, TURNSTILE_PLUGINS=AUDIT_PLUGIN,
               TURNSTILE_VAR_DIR=str(tmp_path / "cli-var"), PYTHONPATH=TEST_PYTHONPATH)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "asyncapi", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    document: dict[str, Any] = orjson.loads(stdout)
    return document


async def test_the_route_and_the_cli_give_the_same_document(
    stack: StackFactory, tmp_path: Path, audit_pipelines: Path, unique: str,
) -> None:
    client = await stack(pipelines_file=audit_pipelines, extra_plugins=(AUDIT_PLUGIN,))
    resp = await client.get("/api/docs/asyncapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    served = await resp.json()
    assert served == await cli_asyncapi(tmp_path, audit_pipelines, f"test.{unique}")
    assert served["channels"]["user.created"]["bindings"]["amqp"]["exchange"]["name"] == f"test.{unique}"
    assert "audit.recorded" in served["channels"]


async def test_openapi_lists_the_events_docs_among_the_operational_routes(stack: StackFactory) -> None:
    client = await stack()
    document = await (await client.get("/api/docs/swagger.json")).json()
    validate(document)
    for path, operation_id in (("/api/docs/asyncapi.json", "asyncapi"), ("/api/docs/events", "events_docs")):
        assert document["paths"][path]["get"]["operationId"] == operation_id
        assert document["paths"][path]["get"]["tags"] == ["operations"]


async def test_the_events_page_and_its_assets_come_from_the_service(stack: StackFactory) -> None:
    client = await stack()
    resp = await client.get("/api/docs/events")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert "://" not in html  # no asset from another host, not even a link
    # (and an empty data: icon, so that the browser asks for no /favicon.ico)
    assets = [url for url in re.findall(r'(?:src|href)="([^"]+)"', html) if url != "data:,"]
    assert set(assets) == {"events/assets/default.min.css", "events/assets/page.css",
                           "events/assets/index.js", "events/assets/page.js"}
    types = {".js": "text/javascript", ".css": "text/css"}  # whatever the host's MIME table says
    for asset in assets:
        served = await client.get(f"/api/docs/{asset}")
        assert served.status == 200, asset
        assert served.content_type == types[Path(asset).suffix]
        assert await served.read() == (STATIC_DIR / Path(asset).name).read_bytes()
    await assert_problem(await client.get("/api/docs/events/assets/README.md"), 404)
    await assert_problem(await client.get("/api/docs/events/assets/..%2f..%2fasyncapi.py"), 404)


def test_the_vendored_renderer_is_the_one_its_readme_names() -> None:
    readme = (STATIC_DIR / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| .* \| `([0-9a-f]{64})` \|$", readme, flags=re.MULTILINE)
    assert {name for name, _ in rows} == {"index.js", "index.js.LICENSE.txt", "default.min.css", "LICENSE"}
    for name, digest in rows:
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == digest, name


@pytest.fixture
async def broker(amqp_url: str, unique: str) -> AsyncIterator[str]:
    """The broker URL; request it before `stack` so its cleanup runs after the service stopped."""
    yield amqp_url
    queues = [f"test.{unique}.user-changes", audit_queue(unique)]
    await remove_topology(amqp_url, queues=[*queues, *(f"{q}.dead" for q in queues)],
                          exchanges=[f"test.{unique}", f"test.{unique}.dlx"])


def assert_documented(document: dict[str, Any], message: DeliveredMessage) -> str:
    """`message` is what the document says its routing key's message is; its routing key."""
    key = message.routing_key
    assert key is not None
    assert document["channels"][key]["address"] == key
    spec = document["components"]["messages"][key]
    with_components = {"components": document["components"]}
    payload = Draft7Validator({**spec["payload"], **with_components}, format_checker=Draft7Validator.FORMAT_CHECKER)
    payload.validate(body_of(message))
    headers = Draft7Validator({**document["components"]["schemas"]["EventHeaders"], **with_components})
    headers.validate(message.header.properties.headers)
    properties = message.header.properties
    documented = spec["bindings"]["amqp"]["x-properties"]
    assert properties.message_id == body_of(message)["id"]
    assert properties.content_type == documented["content_type"] == spec["contentType"]
    assert properties.delivery_mode == documented["delivery_mode"]
    assert properties.app_id == documented["app_id"]
    assert properties.message_type == spec["bindings"]["amqp"]["messageType"]
    return key


async def test_every_published_event_matches_its_documented_message(
    stack: StackFactory, broker: str, redis_db: str, audit_pipelines: Path, unique: str,
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=broker, pipelines_file=audit_pipelines,
                         extra_plugins=(AUDIT_PLUGIN,))
    document = await (await client.get("/api/docs/asyncapi.json")).json()
    admin = await admin_headers(client)
    async with capture(broker, f"test.{unique}") as received:
        user = await register(client, "ann@example.com")
        changed = await client.patch(f"/api/v1/users/{user['id']}", json={"full_name": "Ann B"}, headers=admin)
        assert changed.status == 200
        ann = bearer(await login(client, "ann@example.com", "correct-horse-1"))
        recorded = await client.post("/api/v1/audit", json={"action": "export"}, headers=ann)
        assert recorded.status == 202
        removed = await client.delete(f"/api/v1/users/{user['id']}", headers=admin)
        assert removed.status == 204
        keys = {assert_documented(document, await next_message(received)) for _ in range(4)}
    assert keys == {"user.created", "user.updated", "audit.recorded", "user.deleted"}
