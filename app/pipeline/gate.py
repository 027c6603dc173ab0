"""The rules gate: where the request body is read and validated and business rules run.

The engine places it after the guard steps (auth, rate-limit) and before every other step.
"""

from __future__ import annotations

import logging

import attrs
import pluggy
from aiohttp import web

from app.errors import InternalError
from app.keys import actor_key, body_key, query_key
from app.pipeline.body import BodyReader, QueryReader
from app.pipeline.types import Handler, PipelineConfig
from app.plugins import call_chain, call_each, has_implementations, implementations

log = logging.getLogger("turnstile.plugins")


@attrs.frozen
class RulesGate:
    pipeline: PipelineConfig
    hooks: pluggy.HookRelay
    body: BodyReader | None
    query: QueryReader | None
    # Known at build time: the rules in call order (none: the hook machinery is skipped).
    rules: tuple[pluggy.HookImpl, ...]
    has_transforms: bool

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.query is not None:
            request[query_key] = self.query.read(request)
        body = None
        if self.body is not None:
            raw = await self.body.read(request)
            if self.has_transforms and isinstance(raw, dict):
                raw = await call_chain(self.hooks.transform_request, "body", raw, expect=dict,
                                       request=request, pipeline=self.pipeline)
                if raw is False:  # no suppressing a body: the hook's fault, as a wrong type is
                    log.error("a transform_request hook returned False for pipeline %s", self.pipeline.name)
                    msg = "A business rule failed."
                    raise InternalError(msg)
            body = self.body.validate(raw, request)
            request[body_key] = body
        if self.rules:
            await call_each(self.hooks.check_request, self.rules, request=request, pipeline=self.pipeline,
                            actor=request.get(actor_key), body=body)
        return await handler(request)


def make_gate(pipeline: PipelineConfig, pm: pluggy.PluginManager, models: dict[str, type]) -> RulesGate:
    return RulesGate(
        pipeline=pipeline,
        hooks=pm.hook,
        body=BodyReader(models[pipeline.body]) if pipeline.body else None,
        query=QueryReader(models[pipeline.query]) if pipeline.query else None,
        rules=tuple(implementations(pm.hook.check_request)),
        has_transforms=has_implementations(pm.hook.transform_request),
    )
