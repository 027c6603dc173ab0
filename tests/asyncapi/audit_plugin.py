"""A team's plugin that publishes events of its own, to show they reach the AsyncAPI document
with no change to the core: a step type (`audit-emit`) that answers 202 and publishes the
validated body as an event, the model of that body (`AuditRecord`), and a step (`audit-log`)
that may stand in a subscription.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from aiohttp import web

from app import (
    BuildContext,
    EventsDoc,
    Handler,
    MessageHandler,
    OperationDoc,
    StepKind,
    StepType,
    body_key,
    hookimpl,
    request_id_key,
    schema_field,
)
from app.keys import publisher_key
from app.models.events import Event

log = logging.getLogger("tests.audit")


@attrs.frozen(kw_only=True)
class AuditRecord:
    """Something a team wants on record."""

    action: str = schema_field(description="What was done.", maxLength=100, example="export")
    subject: str | None = schema_field(description="Whom it concerns, if anyone.", default=None)


@attrs.frozen(kw_only=True)
class AuditEmitConfig:
    """`{ use = "audit-emit", event = "audit.recorded" }`: answers 202 and publishes the body."""

    event: str


@attrs.frozen
class AuditEmitStep:
    config: AuditEmitConfig
    app: web.Application

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: dict[str, Any] = request[body_key]
        event = Event.create(self.config.event, body, request[request_id_key])
        await self.app[publisher_key].publish(event)
        return web.Response(status=202)


def _document(config: AuditEmitConfig, doc: OperationDoc) -> None:
    doc.respond(202, "Recorded")


def _document_events(config: AuditEmitConfig, doc: EventsDoc) -> None:
    doc.publishes(config.event, data="AuditRecord", description="the validated body, as it came")


@attrs.frozen(kw_only=True)
class AuditLogConfig:
    """`{ use = "audit-log" }`: logs each request or event that passes."""


@attrs.frozen
class AuditLogStep:
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        log.info("audit: %s %s", request.method, request.path)
        return await handler(request)


@attrs.frozen
class AuditLogMessageStep:
    async def __call__(self, event: Event, handler: MessageHandler) -> None:
        log.info("audit: %s %s", event.type, event.id)
        await handler(event)


def _build_emit(config: AuditEmitConfig, ctx: BuildContext) -> AuditEmitStep:
    return AuditEmitStep(config, ctx.app)


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(
            name="audit-emit", config_cls=AuditEmitConfig, kind=StepKind.TERMINAL, build=_build_emit,
            document=_document, document_events=_document_events,
        ),
        StepType(
            name="audit-log", config_cls=AuditLogConfig, build=lambda config, ctx: AuditLogStep(),
            build_for_message=lambda config, ctx: AuditLogMessageStep(),
        ),
    ]


@hookimpl
def register_models() -> list[type[Any]]:
    return [AuditRecord]
