"""Health, readiness, metrics, the OpenAPI document and the Swagger UI."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from app.keys import readiness_key
from app.readiness import Phase
from tests.app.test_http import assert_problem

Client = TestClient[web.Request, web.Application]


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client: Client) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"data_service", "redis", "rabbitmq"}
    assert body["checks"]["redis"] == "embedded"


async def test_readyz_is_503_while_starting_and_draining(client: Client) -> None:
    readiness = client.app[readiness_key]
    for phase in (Phase.STARTING, Phase.DRAINING):
        readiness.phase = phase
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["status"] == phase.value
    readiness.phase = Phase.READY


async def test_answers_during_the_drain_close_their_connection(client: Client) -> None:
    # The listener closes when the drain ends: a request sent then on a kept-alive connection
    # would go unanswered, so every answer of the drain tells the client to reconnect.
    assert (await client.get("/things/a")).headers.get("Connection") != "close"
    client.app[readiness_key].phase = Phase.DRAINING
    answer = await client.get("/things/a")
    assert answer.status == 200
    assert answer.headers["Connection"] == "close"


async def test_probes_answer_head_with_the_status_and_headers_of_get_and_no_body(client: Client) -> None:
    # Uptime checkers and some load balancers probe with HEAD.
    readiness = client.app[readiness_key]
    for path, phase, status in (("/healthz", Phase.READY, 200), ("/readyz", Phase.READY, 200),
                                ("/readyz", Phase.DRAINING, 503)):
        readiness.phase = phase
        got, head = await client.get(path), await client.head(path)
        assert (head.status, got.status) == (status, status)
        assert head.headers["Content-Type"] == got.headers["Content-Type"] == "application/json"
        assert head.headers["X-Request-ID"]
        assert await head.read() == b""
    readiness.phase = Phase.READY


async def test_metrics_count_requests_per_pipeline_and_status(client: Client) -> None:
    await client.get("/things/a")
    await client.get("/nowhere")
    text = await (await client.get("/metrics")).text()
    assert 'turnstile_requests_total{method="GET",pipeline="get_thing",status="200"}' in text
    assert 'turnstile_requests_total{method="GET",pipeline="none",status="404"}' in text
    assert 'turnstile_request_seconds_bucket{le="0.001",pipeline="get_thing",status="200"}' in text
    assert 'turnstile_step_seconds_count{pipeline="get_thing",step="1:echo"}' in text


async def test_openapi_document_is_valid_and_complete(client: Client) -> None:
    resp = await client.get("/api/docs/swagger.json")
    assert resp.status == 200
    doc = await resp.json()
    validate(doc)
    assert doc["openapi"].startswith("3.0")
    paths = doc["paths"]
    assert {"/widgets/{slot}", "/things/{name}", "/healthz", "/readyz", "/metrics", "/api/docs"} <= set(paths)
    post = paths["/widgets/{slot}"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Widget"}
    assert {"201", "400", "404", "408", "413", "415", "417", "422", "500", "504"} <= set(post["responses"])
    # Every route answers an unmet expectation with a 417 (app/expect.py), operational ones too.
    assert all("417" in operation["responses"] for operations in paths.values() for operation in operations.values())
    # Every answer of every route carries its request id (contract §6), and says so.
    assert all("X-Request-ID" in response["headers"]
               for operations in paths.values() for operation in operations.values()
               for response in operation["responses"].values())
    assert "TURNSTILE_REQUEST_TIMEOUT_S" in post["responses"]["504"]["description"]
    assert post["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert post["parameters"][0] == {"name": "slot", "in": "path", "required": True, "schema": {
        "type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1,
    }}
    widget = doc["components"]["schemas"]["Widget"]
    assert widget["required"] == ["name", "size"]
    assert widget["additionalProperties"] is False


async def test_the_openapi_document_gives_generated_clients_their_types(client: Client) -> None:
    # What an SDK generated from the document lacked (the SDK review): a way to send a request id,
    # declared tags.
    doc = await (await client.get("/api/docs/swagger.json")).json()
    operations = [op for path in doc["paths"].values() for op in path.values()]
    for operation in operations:
        (request_id,) = [p for p in operation["parameters"] if p["name"] == "X-Request-ID"]
        assert (request_id["in"], request_id["required"]) == ("header", False)
    assert {tag["name"] for tag in doc["tags"]} == {tag for op in operations for tag in op.get("tags", ())}
    assert all("security" in op for op in operations)  # [] on the public ones, said rather than left out
    assert doc["servers"] == [{"url": "/", "description": "The service that serves this document"}]
    # the typed headers of the shipped pipelines: tests/integration/test_users_api.py


async def test_swagger_ui_is_served_offline(client: Client) -> None:
    resp = await client.get("/api/docs")
    assert resp.status == 200
    html = await resp.text()
    assert "swagger-ui-bundle.js" in html
    assert "http://" not in html
    assert "https://" not in html
    asset = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200
    assert asset.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_docs_pages_load_from_this_origin_alone_and_cannot_be_framed(client: Client) -> None:
    for path in ("/api/docs", "/api/docs/events"):
        resp = await client.get(path)
        policy = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "connect-src 'self'" in policy  # no document, and no password, from or to elsewhere
        assert "frame-ancestors 'none'" in policy
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_docs_page_asked_for_with_a_trailing_slash_redirects_to_the_page(client: Client) -> None:
    # A typed or proxy-added slash was a 404; the redirect is relative so it holds under a prefix.
    for path, target in (("/api/docs/", "../docs"), ("/api/docs/events/", "../events")):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 308
        assert resp.headers["Location"] == target
        followed = await client.get(path)
        assert followed.status == 200
        assert followed.url.path == path.rstrip("/")
        assert "Content-Security-Policy" in followed.headers


async def test_a_documentation_file_that_is_not_there_is_a_problem_404(client: Client) -> None:
    # aiohttp finds out only while sending the file, past every middleware, and answered a bare 404.
    for path in ("/api/docs/static/nope.js", "/api/docs/static/%2e%2e/__init__.py"):
        problem = await assert_problem(await client.get(path), 404)
        assert problem["detail"] in {"No such file.", "No route matches this path."}
    problem = await assert_problem(await client.get("/api/docs/static/nope.js"), 404)
    assert problem["detail"] == "No such file."
