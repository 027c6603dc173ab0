"""The pipelines' routes: one routing table per loaded file, swapped as one reference on reload.

aiohttp freezes its router when the app starts, so the pipelines are not added to it one by
one. The router holds a single `PipelineRoutes` resource instead, registered last under "/",
whose `resolve` looks the request up in the current `RoutingTable`. A reload builds a whole
new table beside the old one and swaps the reference: a request resolved before the swap has
its handler (the old chain) in hand and finishes on it; every later one gets the new table.

The lookup is aiohttp's own (`UrlDispatcher.resolve`): resources indexed by their path up to
the first parameter, tried from the longest prefix of the request's path to "/". A miss
returns the methods the path allows, so the router's 404 and 405 (with `Allow`) come out
exactly as when the routes were in the router itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, final

import attrs
import pluggy
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute, UrlMappingMatchInfo
from yarl import URL

from app.expect import expect_handler
from app.head_routes import answer_head_beside_get
from app.pipeline.build import StepBuildError, build_pipeline
from app.pipeline.config import ConfigError, PipelineFileError
from app.pipeline.types import PipelineFile


@final
@attrs.frozen
class RoutingTable:
    """The routes of one loaded pipelines file, immutable once built."""

    file: PipelineFile
    loaded_at: dt.datetime
    # Resources by their path up to the first parameter, as UrlDispatcher indexes them.
    index: Mapping[str, tuple[AbstractResource, ...]]
    routes: tuple[AbstractRoute, ...]

    @property
    def sha256(self) -> str:
        return self.file.sha256


def build_routing_table(
    pipelines: PipelineFile, app: web.Application, pm: pluggy.PluginManager, models: dict[str, type]
) -> RoutingTable:
    """Every pipeline of `pipelines` composed into its handler, and the table that finds them."""
    # A router of its own only to build and check the resources (names, paths), as add_route does.
    router = web.UrlDispatcher()
    errors: list[ConfigError] = []
    for pipeline in pipelines.pipelines:
        try:
            handler = build_pipeline(pipeline, app, pm, models)
        except StepBuildError as exc:
            errors.append(ConfigError(str(pipelines.path), exc.step.line, str(exc)))
            continue
        router.add_route(pipeline.route.method, pipeline.route.router_path, handler, name=pipeline.name,
                         expect_handler=expect_handler)
    if errors:
        raise PipelineFileError(errors)
    answer_head_beside_get(router)  # a GET pipeline answers HEAD too, under its own name
    router.freeze()
    index: dict[str, list[AbstractResource]] = {}
    for resource in router.resources():
        index.setdefault(_index_key(resource.canonical), []).append(resource)
    return RoutingTable(
        file=pipelines,
        loaded_at=dt.datetime.now(dt.UTC),
        index={key: tuple(resources) for key, resources in index.items()},
        routes=tuple(router.routes()),
    )


def _index_key(canonical: str) -> str:
    """The path up to the last "/" before the first parameter (UrlDispatcher's index key)."""
    if "{" in canonical:
        canonical = canonical.partition("{")[0].rpartition("/")[0]
    return canonical.rstrip("/") or "/"


@final
class PipelineRoutes(AbstractResource):
    """The one router resource behind which every pipeline route lives; `table` is swapped whole."""

    def __init__(self, table: RoutingTable) -> None:
        super().__init__(name=None)
        self.table = table

    @property
    def canonical(self) -> str:
        return "/"  # indexed at the root: tried after every operational route

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        index = self.table.index  # one read: the whole lookup sees one table
        allowed: set[str] = set()
        part = request.rel_url.path_safe
        while part:
            for resource in index.get(part, ()):
                match, methods = await resource.resolve(request)
                if match is not None:
                    return match, allowed
                allowed |= methods
            if part == "/":
                break
            part = part.rpartition("/")[0] or "/"
        return None, allowed

    def url_for(self, **kwargs: str) -> URL:
        msg = "pipeline routes are found by method and path, not built by name"
        raise NotImplementedError(msg)

    def add_prefix(self, prefix: str) -> None:
        msg = "pipeline routes cannot live under a sub-application prefix"
        raise NotImplementedError(msg)

    def get_info(self) -> Any:  # aiohttp's _InfoDict is private
        return {"path": "/", "pipelines": len(self.table.routes)}

    def raw_match(self, path: str) -> bool:
        return False  # never reused by add_resource for another route

    def __len__(self) -> int:
        return len(self.table.routes)

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter(self.table.routes)


routes_key = web.AppKey("pipeline_routes", PipelineRoutes)


def setup_pipeline_routes(
    app: web.Application, pipelines: PipelineFile, pm: pluggy.PluginManager, models: dict[str, type]
) -> None:
    """Build the first routing table and put the resource that serves it in the app's router."""
    routes = PipelineRoutes(build_routing_table(pipelines, app, pm, models))
    app[routes_key] = routes
    app.router.register_resource(routes)
