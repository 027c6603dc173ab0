"""PipelineConfig → one composed handler, once, at start-up (like aiohttp's _build_middlewares).

Steps are listed outermost first, so the chain is built in reverse: each step gets the
already-built rest of the chain as its `handler`. The rules gate goes after the last guard,
wherever wrappers stand: body validation and the `check_request` hooks never run before
authentication (a wrapper listed before `auth`, an audit step say, still runs first).
Before the first step, ``{name:int}`` route values above the int64 range are a 404.

Each step is wrapped once, by `_link`: its latency histogram always; a span when tracing is
on (app/tracing.py) and an entry of the Server-Timing header when that is on
(app/server_timing.py). Both are decided here, at build time, so when they are off a
request pays nothing for them.
"""

from __future__ import annotations

import logging
import time

import attrs
import pluggy
from aiohttp import web
from prometheus_client import Histogram

from app.deadlines import request_deadlines_key, within_deadline
from app.errors import InternalError
from app.keys import pipeline_key
from app.metrics import STEP_SECONDS
from app.pipeline.gate import make_gate
from app.pipeline.types import (
    BuildContext,
    ConfiguredStep,
    Handler,
    PipelineConfig,
    Step,
    StepKind,
    int_param_in_range,
)
from app.server_timing import entry_name, record, server_timing_on
from app.tracing import Tracing, app_tracer, step_span_name, traced_step

RULES = "rules"

log = logging.getLogger("turnstile.plugins")


async def _end_of_chain(request: web.Request) -> web.StreamResponse:
    # Load-time checks make the last step a terminal one, so this only runs when a
    # terminal step passes the request on anyway: a plugin bug, not a client error.
    msg = "The pipeline ended without an answer."
    raise InternalError(msg)


@attrs.frozen
class _Link:
    """One link of the chain: its metric label, its step and where the step was written."""

    label: str
    step: Step
    configured: ConfiguredStep | None  # None for the rules gate


def _link(
    link: _Link, rest: Handler, pipeline: str, position: int, *, tracing: Tracing | None, timing: bool
) -> Handler:
    timer = STEP_SECONDS.labels(pipeline, link.label)
    step = link.step
    if tracing is not None:
        name = (
            step_span_name(link.configured.type.name, tracing.file_name, link.configured.line)
            if link.configured is not None
            else f"step {RULES}"
        )
        step = traced_step(step, tracing.tracer, name)
    if timing:
        return _timed(link, step, rest, timer, pipeline=pipeline, position=position)

    async def run(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await step(request, rest)
        finally:
            timer.observe(time.perf_counter() - started)
        if not isinstance(response, web.StreamResponse):
            raise _not_an_answer(link, pipeline, response)
        return response

    return run


def _timed(link: _Link, step: Step, rest: Handler, timer: Histogram, *, pipeline: str, position: int) -> Handler:
    """`_link`'s wrapper that also notes the step's time for the Server-Timing header."""
    entry = entry_name(link.label)

    async def run(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await step(request, rest)
        finally:
            elapsed = time.perf_counter() - started
            timer.observe(elapsed)
            record(request, position, entry, elapsed)
        if not isinstance(response, web.StreamResponse):
            raise _not_an_answer(link, pipeline, response)
        return response

    return run


def _not_an_answer(link: _Link, pipeline: str, returned: object) -> InternalError:
    """A step returned something that is not a response: a plugin bug, logged with who to ask
    (a wrapper around it never sees the value, so the blame cannot land on the wrong step)."""
    configured = link.configured
    where = (f"step {link.label} of pipeline {pipeline!r} (line {configured.line}, plugin {configured.plugin or '?'})"
             if configured is not None else f"the rules gate of pipeline {pipeline!r}")
    log.error("%s returned %s, not a response", where, type(returned).__name__)
    return InternalError("A step of this route did not answer.")


class StepBuildError(Exception):
    """A plugin's `StepType.build` raised: the pipelines file cannot be served."""

    def __init__(self, pipeline: PipelineConfig, index: int, step: ConfiguredStep, cause: Exception) -> None:
        self.step = step
        super().__init__(f"pipeline {pipeline.name!r}, step {index} ({step.type.name}): plugin "
                         f"{step.plugin or '?'} could not build it: {type(cause).__name__}: {cause}")


def build_pipeline(
    pipeline: PipelineConfig, app: web.Application, pm: pluggy.PluginManager, models: dict[str, type]
) -> Handler:
    """The request handler for one pipeline: its steps composed around the rules gate."""
    context = BuildContext(app, pipeline)
    chain: list[_Link] = []
    guards = [i for i, configured in enumerate(pipeline.steps) if configured.kind is StepKind.GUARD]
    gate_at = guards[-1] + 1 if guards else 0
    for index, configured in enumerate(pipeline.steps, start=1):
        if index - 1 == gate_at:
            chain.append(_Link(RULES, make_gate(pipeline, pm, models), None))
        try:
            step = configured.type.build(configured.config, context)
        except Exception as exc:  # a plugin's build: anything; named, with its traceback logged
            log.exception("pipeline %r, step %d (%s): plugin %s could not build it", pipeline.name, index,
                          configured.type.name, configured.plugin or "?")
            raise StepBuildError(pipeline, index, configured, exc) from exc
        chain.append(_Link(f"{index}:{configured.type.name}", step, configured))
    tracing, timing = app_tracer(app), server_timing_on(app)
    handler: Handler = _end_of_chain
    for position in reversed(range(len(chain))):
        handler = _link(chain[position], handler, pipeline.name, position, tracing=tracing, timing=timing)
    inner = handler
    int_params = tuple(sorted(pipeline.route.int_params))

    deadlines = app[request_deadlines_key]

    async def pipeline_handler(request: web.Request) -> web.StreamResponse:
        if int_params:
            _check_int_params(request, int_params)
        request[pipeline_key] = pipeline
        return await within_deadline(deadlines, inner, request)

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
