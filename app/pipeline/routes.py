"""Wire every pipeline of the file into the app's router, each as its own composed handler."""

from __future__ import annotations

import pluggy
from aiohttp import web

from app.pipeline.build import build_pipeline
from app.pipeline.types import PipelineFile


def setup_pipeline_routes(
    app: web.Application, pipelines: PipelineFile, pm: pluggy.PluginManager, models: dict[str, type]
) -> None:
    for pipeline in pipelines.pipelines:
        handler = build_pipeline(pipeline, app, pm, models)
        app.router.add_route(pipeline.route.method, pipeline.route.router_path, handler, name=pipeline.name)
