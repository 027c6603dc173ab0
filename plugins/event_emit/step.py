"""The event-emit step: after a successful answer, a domain event to the publisher."""

from __future__ import annotations

from typing import Any

import attrs
import pluggy
from aiohttp import web

from app import (
    BuildContext,
    Event,
    EventsDoc,
    Handler,
    OperationDoc,
    PipelineConfig,
    Publisher,
    call_chain,
    has_implementations,
    payload_key,
    plugin_manager_key,
    publisher_key,
    request_id_key,
    settings_key,
)
from plugins.event_emit.config import EventEmitConfig


@attrs.frozen
class EventEmitStep:
    config: EventEmitConfig
    pipeline: PipelineConfig
    publisher: Publisher
    hooks: pluggy.HookRelay
    has_enrichers: bool
    confirm_deadline_s: float

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not 200 <= response.status < 300:
            return response
        body = Event.create(self.config.event, self._data(request, response), request[request_id_key]).to_dict()
        if self.has_enrichers:
            enriched = await call_chain(
                self.hooks.enrich_event, "event", body, request=request, pipeline=self.pipeline
            )
            if enriched is False:
                return response
            body = enriched
        await self.publisher.publish(Event.from_dict(body), confirm_deadline_s=self.confirm_deadline_s)
        return response

    def _data(self, request: web.Request, response: web.StreamResponse) -> dict[str, Any]:
        payload = response.get(payload_key)
        if isinstance(payload, dict):
            return payload
        int_params = self.pipeline.route.int_params
        return {k: int(v) if k in int_params else v for k, v in request.match_info.items()}


def build(config: EventEmitConfig, ctx: BuildContext) -> EventEmitStep:
    pm: pluggy.PluginManager = ctx.app[plugin_manager_key]
    return EventEmitStep(
        config=config,
        pipeline=ctx.pipeline,
        publisher=ctx.app[publisher_key],
        hooks=pm.hook,
        has_enrichers=has_implementations(pm.hook.enrich_event),
        confirm_deadline_s=ctx.app[settings_key].event_confirm_deadline_s,
    )


def document(config: EventEmitConfig, doc: OperationDoc) -> None:
    note = f"Publishes `{config.event}` on success."
    doc.pipeline_notes.append(note)


def document_events(config: EventEmitConfig, doc: EventsDoc) -> None:
    # What `_data` sends: the route's answer, or its parameters when it answers without a body.
    data = doc.response_schema()
    source = "the route's answer"
    if data is None:
        data, source = doc.route_params_schema(), "the route's parameters (it answers without a body)"
    doc.publishes(config.event, data=data, description=(
        f"after a 2xx answer; data: {source}, as the `enrich_event` hooks leave it (they may also suppress it)"
    ))
