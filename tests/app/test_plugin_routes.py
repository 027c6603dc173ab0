"""Routes a plugin serves beside the pipelines (`register_routes`): served without steps, with
the app-wide middlewares, listed in the OpenAPI document, kept across a reload, printed by
`turnstile openapi`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from app import NotFound, PluginRoute, hookimpl, model_ref
from app.keys import plugin_manager_key, settings_key
from app.main import create_app
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked
from app.pipeline.routes import routes_key
from app.plugins import make_plugin_manager
from app.reload import Outcome, reload_pipelines
from app.reserved_routes import reserved_routes
from app.settings import Settings
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.app.test_cli import run
from tests.fixtures import sample_plugin
from tests.services import ROOT


async def _widget_document(request: web.Request) -> web.Response:
    return web.json_response({"widgets": ["a"]}, headers={"Cache-Control": "public, max-age=60"})


async def _gone(request: web.Request) -> web.Response:
    msg = "Nothing here for this configuration."
    raise NotFound(msg)


class RoutesPlugin:
    @hookimpl
    def register_routes(self) -> list[PluginRoute]:
        return [
            PluginRoute(path="/.well-known/widgets.json", handler=_widget_document, name="widgets_document",
                        summary="The widgets", responses={"200": {"description": "The widgets"}}),
            PluginRoute(path="/.well-known/gone.json", handler=_gone, name="gone", summary="Never there",
                        responses={"404": {"description": "Not configured",
                                           "content": {"application/problem+json": {"schema": model_ref("Problem")}}}}),
        ]


async def test_a_plugins_route_is_served_with_the_app_wide_middlewares(turnstile: StartService) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, RoutesPlugin()], entrypoints=False)
    client = service.client
    resp = await client.get("/.well-known/widgets.json", headers={"X-Request-ID": "route-1"})
    assert resp.status == 200
    assert await resp.json() == {"widgets": ["a"]}
    assert resp.headers["X-Request-ID"] == "route-1"
    assert resp.headers["Cache-Control"] == "public, max-age=60"  # no pipeline: no no-store added
    gone = await client.get("/.well-known/gone.json", headers={"X-Request-ID": "route-2"})
    assert gone.status == 404
    assert gone.content_type == "application/problem+json"
    assert (await gone.json())["request_id"] == "route-2"
    metrics = await (await client.get("/metrics")).text()
    assert 'turnstile_requests_total{method="GET",pipeline="widgets_document",status="200"}' in metrics


async def test_every_get_route_answers_head_with_its_status_and_no_body(turnstile: StartService) -> None:
    # RFC 9110 §9.3.2, whoever registered the route: a plugin, the core, the OpenAPI and
    # AsyncAPI pages, or a pipeline.
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, RoutesPlugin()], entrypoints=False)
    client = service.client
    for path in ("/.well-known/widgets.json", "/.well-known/gone.json", "/metrics", "/api/docs",
                 "/api/docs/swagger.json", "/api/docs/asyncapi.json", "/api/docs/events", "/things/a", "/healthz"):
        got, head = await client.get(path), await client.head(path)
        assert head.status == got.status, path
        assert head.headers["Content-Type"] == got.headers["Content-Type"], path
        assert await head.read() == b"", path


async def test_a_plugins_routes_are_in_the_openapi_document_before_and_after_a_reload(
    turnstile: StartService,
) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, RoutesPlugin()], entrypoints=False)
    for _ in range(2):
        document = await (await service.client.get("/api/docs/swagger.json")).json()
        validate(document)
        operation = document["paths"]["/.well-known/widgets.json"]["get"]
        assert (operation["operationId"], operation["tags"]) == ("widgets_document", ["operations"])
        assert "404" in document["paths"]["/.well-known/gone.json"]["get"]["responses"]
        assert await reload_pipelines(service.client.app) is Outcome.OK


def test_a_route_taken_twice_stops_the_start_up(core_settings: Settings) -> None:
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, RoutesPlugin()])

    class Again:
        @hookimpl
        def register_routes(self) -> list[PluginRoute]:
            return [PluginRoute(path="/.well-known/widgets.json", handler=_widget_document, name="widgets_again",
                                summary="Again", responses={})]

    pm.register(Again())
    with pytest.raises(PipelineFileError) as refused:
        create_app(core_settings, pm=pm)
    assert [error.message for error in refused.value.errors] == [
        "GET /.well-known/widgets.json is served by both plugin route 'widgets_document' and plugin route "
        "'widgets_again'"
    ]


TAKEN = """
[[pipelines]]
name = "widgets"
route = "GET /.well-known/widgets.json"
steps = [{ use = "echo" }]

[[pipelines]]
name = "ready"
route = "GET /readyz"
steps = [{ use = "echo" }]

[[pipelines]]
name = "any_doc"
route = "GET /api/docs/{page}"
steps = [{ use = "echo" }]

[[pipelines]]
name = "a_file"
route = "GET /api/docs/static/{name}/{version}"
steps = [{ use = "echo" }]

[[pipelines]]
name = "a_named_file"
route = "GET /api/docs/static/swagger-ui.css"
steps = [{ use = "echo" }]

[[pipelines]]
name = "post_health"
route = "POST /healthz"
steps = [{ use = "echo" }]

[[pipelines]]
name = "documents"
route = "GET /api/documents/{id}"
steps = [{ use = "echo" }]
"""


def test_a_pipeline_on_a_route_the_service_or_a_plugin_serves_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text(TAKEN)
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, RoutesPlugin()])
    with pytest.raises(PipelineFileError) as refused:
        load_checked(path, pm)
    assert [(error.line, error.message) for error in refused.value.errors] == [
        (2, "pipeline 'widgets': GET /.well-known/widgets.json is taken by plugin route 'widgets_document' "
            "(GET /.well-known/widgets.json), which the router tries first: the pipeline would never run"),
        (7, "pipeline 'ready': GET /readyz is taken by the readiness probe (GET /readyz), which the router "
            "tries first: the pipeline would never run"),
        (12, "pipeline 'any_doc': GET /api/docs/{page} is taken by the OpenAPI document "
             "(GET /api/docs/swagger.json), which the router tries first: the pipeline would never run"),
        (12, "pipeline 'any_doc': GET /api/docs/{page} is taken by the AsyncAPI document "
             "(GET /api/docs/asyncapi.json), which the router tries first: the pipeline would never run"),
        (12, "pipeline 'any_doc': GET /api/docs/{page} is taken by the events' documentation "
             "(GET /api/docs/events), which the router tries first: the pipeline would never run"),
        (17, "pipeline 'a_file': GET /api/docs/static/{name}/{version} is taken by the API documentation's "
             "files (GET /api/docs/static/…), which the router tries first: the pipeline would never run"),
        (22, "pipeline 'a_named_file': GET /api/docs/static/swagger-ui.css is taken by the API documentation's "
             "files (GET /api/docs/static/…), which the router tries first: the pipeline would never run"),
    ]


async def test_a_reload_onto_a_plugins_route_is_refused_as_the_start_up_would_be(turnstile: StartService) -> None:
    documents = "[[pipelines]]" + TAKEN.rsplit("[[pipelines]]", maxsplit=1)[-1]
    service = await turnstile(documents, plugins=[sample_plugin, RoutesPlugin()], entrypoints=False)
    pipelines = service.client.app[settings_key].pipelines_file
    assert pipelines != CORE_PIPELINES
    pipelines.write_text(documents + "[[pipelines]]" + TAKEN.split("[[pipelines]]")[1])

    assert await reload_pipelines(service.client.app) is Outcome.INVALID
    assert (await service.client.get("/.well-known/widgets.json")).status == 200


async def test_every_route_besides_the_pipelines_is_one_they_may_not_take(turnstile: StartService) -> None:
    # What keeps the list of reserved routes true to the router: a route added to the service
    # without its entry there would let a pipeline be shadowed by it again.
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, RoutesPlugin()], entrypoints=False)
    app = service.client.app
    reserved = reserved_routes(app[plugin_manager_key])
    pipelines = set(app[routes_key].table.routes)
    for route in app.router.routes():
        if route.resource is None or route in pipelines or route.method == "HEAD":
            continue
        path = route.resource.canonical  # a static directory's has no trailing slash
        assert any(
            route.method == taken.method
            and (path == taken.path or (taken.prefix and f"{path}/".startswith(taken.path)))
            for taken in reserved
        ), f"{route.method} {path}"


def test_turnstile_openapi_prints_the_plugins_routes(tmp_path: Path) -> None:
    result = run(tmp_path, "openapi", TURNSTILE_DISABLE_PLUGINS="acme", PIPELINES_FILE=str(ROOT / "pipelines.toml"))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    validate(document)
    assert document["paths"]["/.well-known/jwks.json"]["get"]["operationId"] == "jwks"
