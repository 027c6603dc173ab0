"""The event-emit step: a domain event to the publisher for every committed change.

An event describes a committed change (contract §9): it is emitted after a 2xx answer, and also
when the data service accepted the write (`committed_key`) but a later step failed (a
revocation that could not be recorded answers 503) or the request was cancelled: the other
instances and consumers must still hear of the change. For the same reason an `enrich_event`
hook that fails on the event of a saved change does not lose it: the event goes out as it was
made, without that enrichment, and the request still answers the hook's error. A PATCH whose
body names no field (`{}`) changes nothing, and announces nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs
import pluggy
from aiohttp import web
from prometheus_client import Counter

from app import (
    BuildContext,
    Event,
    EventDecodeError,
    EventsDoc,
    Handler,
    InternalError,
    OperationDoc,
    PipelineConfig,
    Publisher,
    body_key,
    call_chain,
    committed_at_key,
    committed_key,
    complete_despite_cancellation,
    event_id_key,
    has_implementations,
    payload_key,
    plugin_manager_key,
    publisher_key,
    request_id_key,
    settings_key,
)
from plugins.event_emit.config import EventEmitConfig

log = logging.getLogger("turnstile.event_emit")

UNANNOUNCED = Counter(
    "turnstile_events_unannounced_total",
    "Saved changes no event could describe: the data service's answer named no record and the route none",
    ["event"],
)
UNENRICHED = Counter(
    "turnstile_events_unenriched_total",
    "Events of saved changes published without their enrichment, because an enrich_event hook failed on them.",
    ["event"],
)


@attrs.frozen
class EventEmitStep:
    config: EventEmitConfig
    pipeline: PipelineConfig
    publisher: Publisher
    hooks: pluggy.HookRelay
    has_enrichers: bool
    confirm_deadline_s: float

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Chosen before the steps inside run, so they can tie what they do to this event; kept
        # in a local as well, since an event-emit step inside this one sets the key to its own.
        request[event_id_key] = event_id = Event.new_id()
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            # Cancelled after the change was saved (`complete_despite_cancellation` says when):
            # the event still goes out.
            committed = request.get(committed_key)
            if committed is not None:
                await complete_despite_cancellation(self._emit_after_failure(request, committed, event_id))
            raise
        except Exception:
            committed = request.get(committed_key)
            if committed is not None:
                await self._emit_after_failure(request, committed, event_id)
            raise
        if 200 <= response.status < 300:
            await self._emit(request, response, event_id)
        elif (committed := request.get(committed_key)) is not None:
            await self._emit_after_failure(request, committed, event_id)
        return response

    async def _emit(self, request: web.Request, response: web.StreamResponse, event_id: str) -> None:
        if request.method == "PATCH" and request.get(body_key) == {}:
            return  # a patch that names no field changes nothing (RFC 7396): there is no change to announce
        data = self._data(request, response)
        if not data:
            # Saved, but the data service's answer (which named the new record) was unusable and the
            # route names none: an event with no data could be neither deduped nor applied.
            UNANNOUNCED.labels(self.config.event).inc()
            log.error("pipeline %s: a saved change cannot be announced: the data service's answer named no "
                      "record", self.pipeline.name, extra={"request_id": request.get(request_id_key)})
            return
        event = Event.create(self.config.event, data, request[request_id_key], id=event_id,
                             occurred_at=request.get(committed_at_key))
        if self.has_enrichers:
            enriched = await self._enriched(request, event)
            if enriched is None:
                return
            event = enriched
        await self.publisher.publish(event, confirm_deadline_s=self.confirm_deadline_s)

    async def _enriched(self, request: web.Request, event: Event) -> Event | None:
        """The event as the `enrich_event` hooks leave it, or None when one suppresses it."""
        try:
            body = await call_chain(
                self.hooks.enrich_event, "event", event.to_dict(), expect=dict, check=_event_problem, request=request,
                pipeline=self.pipeline,
            )
            if body is False:
                return None
            enriched = Event.from_dict(body)
            if (enriched.id, enriched.type) != (event.id, event.type):
                # The id is what consumers dedupe by, the type the routing key the documents name.
                log.error("pipeline %s: an enrich_event hook changed the event's id or type (%r to %r)",
                          self.pipeline.name, event.type, enriched.type)
                msg = "A business rule failed."
                raise InternalError(msg)
            return enriched
        except Exception:
            if request.get(committed_key) is None:
                raise
            # The change is saved, so its event must go out (contract §9); what the failed hook
            # meant to add or suppress is unknown, and a missing enrichment does less harm
            # than a change nobody hears of. Consumers already dedupe by message_id.
            UNENRICHED.labels(self.config.event).inc()
            log.error("pipeline %s: an enrich_event hook failed on the event of a saved change; the event is "
                      "published without its enrichment", self.pipeline.name,
                      extra={"request_id": request.get(request_id_key)})
            await self.publisher.publish(event, confirm_deadline_s=self.confirm_deadline_s)
            raise

    async def _emit_after_failure(self, request: web.Request, committed: web.StreamResponse, event_id: str) -> None:
        """The change is saved though the request fails: emit, and let the request's own error stand."""
        try:
            await self._emit(request, committed, event_id)
        except Exception:  # the original failure is what the client must see
            log.exception("pipeline %s: the event of a committed change could not be emitted", self.pipeline.name,
                          extra={"request_id": request.get(request_id_key)})

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
    # What `_data` sends: the route's answer (or what it saved), or its parameters without either.
    data = doc.payload_schema()
    source = "the route's answer, or the change it saved"
    if data is None:
        data, source = doc.route_params_schema(), "the route's parameters (it answers without a body)"
    doc.publishes(config.event, data=data, description=(
        f"after a 2xx answer; data: {source}, as the `enrich_event` hooks leave it (they may also suppress it)"
    ))


def _event_problem(body: object) -> str | None:
    """Why an `enrich_event` hook's result is no event (named with its plugin); None when it is one."""
    try:
        Event.from_dict(body)
    except EventDecodeError as exc:
        return f"it is no event: {exc}"
    return None
