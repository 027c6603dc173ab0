"""PipelineConfig → one composed handler, once, at start-up (like aiohttp's _build_middlewares).

Steps are listed outermost first, so the chain is built in reverse: each step gets the
already-built rest of the chain as its `handler`. The rules gate goes after the last guard,
wherever wrappers stand: body validation and the `check_request` hooks never run before
authentication (a wrapper listed before `auth`, an audit step say, still runs first).
Before the first step, ``{name:int}`` route values above the int64 range are a 404.
"""

from __future__ import annotations

import time

import pluggy
from aiohttp import web

from app.errors import InternalError
from app.keys import pipeline_key
from app.metrics import STEP_SECONDS
from app.pipeline.gate import make_gate
from app.pipeline.types import BuildContext, Handler, PipelineConfig, Step, StepKind, int_param_in_range


async def _end_of_chain(request: web.Request) -> web.StreamResponse:
    # Load-time checks make the last step a terminal one, so this only runs when a
    # terminal step passes the request on anyway: a plugin bug, not a client error.
    msg = "The pipeline ended without an answer."
    raise InternalError(msg)


def _link(step: Step, rest: Handler, pipeline: str, label: str) -> Handler:
    timer = STEP_SECONDS.labels(pipeline, label)

    async def run(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await step(request, rest)
        finally:
            timer.observe(time.perf_counter() - started)

    return run


def build_pipeline(
    pipeline: PipelineConfig, app: web.Application, pm: pluggy.PluginManager, models: dict[str, type]
) -> Handler:
    """The request handler for one pipeline: its steps composed around the rules gate."""
    context = BuildContext(app, pipeline)
    chain: list[tuple[str, Step]] = []
    guards = [i for i, configured in enumerate(pipeline.steps) if configured.kind is StepKind.GUARD]
    gate_at = guards[-1] + 1 if guards else 0
    for index, configured in enumerate(pipeline.steps, start=1):
        if index - 1 == gate_at:
            chain.append(("rules", make_gate(pipeline, pm, models)))
        chain.append((f"{index}:{configured.type.name}", configured.type.build(configured.config, context)))
    handler: Handler = _end_of_chain
    for label, step in reversed(chain):
        handler = _link(step, handler, pipeline.name, label)
    inner = handler
    int_params = tuple(sorted(pipeline.route.int_params))

    async def pipeline_handler(request: web.Request) -> web.StreamResponse:
        if int_params:
            _check_int_params(request, int_params)
        request[pipeline_key] = pipeline
        return await inner(request)

    return pipeline_handler


def _check_int_params(request: web.Request, names: tuple[str, ...]) -> None:
    """A 404 before any step runs when an ``{name:int}`` value is above the int64 range.

    The router already refused every other spelling (`INT_PARAM_PATTERN`), so the request
    is answered exactly as a path that matches no route would be: such a value names nothing.
    """
    match_info = request.match_info
    for name in names:
        if not int_param_in_range(match_info[name]):
            raise web.HTTPNotFound
