"""Routes a plugin serves beside the pipelines (the `register_routes` hook): fixed documents
such as a JWK Set at a well-known path.

Such a route has no steps: it is added to the router as /healthz is, so only the app-wide
middlewares run (request id, metrics and the request log, problem+json errors), and it is
listed in the OpenAPI document among the operational routes, with the responses it declares.
Routes are fixed when the app is built; a reload of the pipelines file leaves them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast, final

import attrs
import pluggy
from aiohttp import web

from app.deadlines import RequestDeadlines, request_deadlines_key, within_deadline
from app.expect import expect_handler
from app.pipeline.types import Handler
from app.plugin_loading import call_at_load


@final
@attrs.frozen(kw_only=True)
class PluginRoute:
    """A step-free route a plugin serves.

    path: the URL path (no parameters), e.g. "/.well-known/jwks.json".
    handler: answers the request; raise a `ProblemError` for an error answer.
    name: the route's name, its ``operationId`` and its ``pipeline`` label in the metrics.
    summary: one line for the OpenAPI document.
    responses: the OpenAPI Responses Object, by status ("200", "404", …).
    method: "GET" unless said otherwise.
    """

    path: str
    handler: Handler
    name: str
    summary: str
    responses: dict[str, Any]
    method: str = "GET"

    def operation(self) -> dict[str, Any]:
        """The route's OpenAPI operation, tagged as an operational route."""
        return {"operationId": self.name, "summary": self.summary, "tags": ["operations"],
                "responses": self.responses}


def plugin_routes(pm: pluggy.PluginManager) -> list[PluginRoute]:
    """Every route the plugins add, in load order."""
    return [
        route
        for impl in pm.hook.register_routes.get_hookimpls()
        for route in cast("Sequence[PluginRoute]", call_at_load(impl) or ())
    ]


plugin_routes_key: Final[web.AppKey[Sequence[PluginRoute]]] = web.AppKey("plugin_routes")


def setup_plugin_routes(app: web.Application, pm: pluggy.PluginManager) -> tuple[PluginRoute, ...]:
    """Add the plugins' routes to the router and keep them for the OpenAPI document.

    Raises:
        ValueError: a method and path the router already serves (the core's or another
            plugin's route), or a route name already taken: a clash stops the start-up.
    """
    routes = tuple(plugin_routes(pm))
    taken = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}
    for route in routes:
        if (route.method, route.path) in taken:
            msg = f"{route.method} {route.path} ({route.name}): already served by another route"
            raise ValueError(msg)
        taken.add((route.method, route.path))
        app.router.add_route(route.method, route.path, _within_deadline(app[request_deadlines_key], route.handler),
                             name=route.name, expect_handler=expect_handler)
    app[plugin_routes_key] = routes
    return routes


def _within_deadline(deadlines: RequestDeadlines, handler: Handler) -> Handler:
    async def run(request: web.Request) -> web.StreamResponse:
        return await within_deadline(deadlines, handler, request)

    return run
