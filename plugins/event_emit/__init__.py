"""The built-in `event-emit` plugin: domain events after successful writes."""

from __future__ import annotations

from typing import Any

from app import StepType, hookimpl
from plugins.event_emit.config import EventEmitConfig
from plugins.event_emit.step import build, document, document_events


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [StepType(
        name="event-emit", config_cls=EventEmitConfig, build=build, document=document,
        document_events=document_events,
    )]
