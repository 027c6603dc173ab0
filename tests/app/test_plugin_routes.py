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
from app.main import create_app
from app.plugins import make_plugin_manager
from app.reload import Outcome, reload_pipelines
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
    with pytest.raises(ValueError, match=r"GET /.well-known/widgets.json \(widgets_again\): already served"):
        create_app(core_settings, pm=pm)


def test_turnstile_openapi_prints_the_plugins_routes(tmp_path: Path) -> None:
    result = run(tmp_path, "openapi", TURNSTILE_DISABLE_PLUGINS="acme", PIPELINES_FILE=str(ROOT / "pipelines.toml"))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    validate(document)
    assert document["paths"]["/.well-known/jwks.json"]["get"]["operationId"] == "jwks"
