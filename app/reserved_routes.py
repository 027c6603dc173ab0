"""The routes a pipeline may not take: the service's own (probes, metrics, documentation) and
the plugins' (`register_routes`).

They sit in the router before the pipelines, so a pipeline on one of their paths would never
run. `load_checked` refuses such a pipeline with its file and line, the same at start-up, in
`turnstile check` and on a reload, instead of a start-up that fails on a file the check and the
reload accepted.
"""

from __future__ import annotations

import re
from typing import Final, final

import attrs
import pluggy

from app.asyncapi.page import ASSETS_PATH, ASYNCAPI_PATH, EVENTS_PAGE_PATH
from app.openapi import DOCS_PATH, SPEC_PATH
from app.pipeline.types import ROUTE_PARAM, PipelineConfig
from app.plugin_routes import plugin_routes

HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"


@final
@attrs.frozen
class ReservedRoute:
    """`method` `path` served by `owner`; with `prefix`, every path under `path` too."""

    method: str
    path: str
    owner: str
    prefix: bool = False

    def takes(self, pipeline: PipelineConfig) -> bool:
        """Whether some request for `pipeline`'s route would reach this route instead."""
        methods = {self.method, "HEAD"} if self.method == "GET" else {self.method}
        if pipeline.route.method not in methods:
            return False
        route = _pattern(pipeline.route.path)
        if not self.prefix:
            return route.fullmatch(self.path) is not None
        # Under the prefix: a path whose fixed start is there, or whose parameters can reach
        # one segment or more past it (a parameter spans one segment).
        return pipeline.route.path.startswith(self.path) or any(
            route.fullmatch(f"{self.path}{rest}") for rest in ("x", "x/x", "x/x/x")
        )


def _pattern(path: str) -> re.Pattern[str]:
    """What a route's path matches: each parameter one segment, whatever its type says."""
    literals = ROUTE_PARAM.split(path)[::2]  # the parameters' names are captured between them
    return re.compile("[^/]+".join(re.escape(literal) for literal in literals))


CORE_ROUTES: Final = (
    ReservedRoute("GET", HEALTHZ_PATH, "the liveness probe"),
    ReservedRoute("GET", READYZ_PATH, "the readiness probe"),
    ReservedRoute("GET", METRICS_PATH, "the metrics"),
    ReservedRoute("GET", DOCS_PATH, "the API documentation"),
    ReservedRoute("GET", f"{DOCS_PATH}/", "the API documentation (a redirect)"),
    ReservedRoute("GET", SPEC_PATH, "the OpenAPI document"),
    ReservedRoute("GET", ASYNCAPI_PATH, "the AsyncAPI document"),
    ReservedRoute("GET", EVENTS_PAGE_PATH, "the events' documentation"),
    ReservedRoute("GET", f"{EVENTS_PAGE_PATH}/", "the events' documentation (a redirect)"),
    ReservedRoute("GET", f"{DOCS_PATH}/static/", "the API documentation's files", prefix=True),
    ReservedRoute("GET", f"{ASSETS_PATH}/", "the events' documentation's files", prefix=True),
)


def reserved_routes(pm: pluggy.PluginManager) -> tuple[ReservedRoute, ...]:
    """The service's own routes, then every plugin's, in load order."""
    return (*CORE_ROUTES, *(ReservedRoute(r.method, r.path, f"plugin route {r.name!r}") for r in plugin_routes(pm)))
