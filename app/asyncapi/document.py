"""The AsyncAPI 3.0 document of the events (contract §9, §14), built once from the pipelines.

With `app.asyncapi.objects`, the only place that knows the AsyncAPI format. What it documents
comes from the same places as the OpenAPI document: each pipeline's steps say which events
they publish and what the events' ``data`` holds (`StepType.document_events`, filled into an
`EventsDoc`), the models give the schemas, and the subscriptions of the pipelines file give
what is consumed. So a plugin's step type that publishes events, and the models it
registers, appear here without a change to the core.

Shape: one server (the broker), one channel and one message per routing key published or
consumed (AMQP binding: the topic exchange), one channel per subscription queue, a `send`
operation per published routing key and a `receive` operation per subscription.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs

from app.asyncapi.objects import (
    ANY_EVENT,
    ASYNCAPI_VERSION,
    EVENT_HEADERS,
    HEADERS_SCHEMA,
    SCHEMAS_PREFIX,
    SERVER,
    info,
    message,
    message_id,
    queue_channel,
    receive,
    routing_key_channel,
    send,
    server,
    unknown_data,
)
from app.models.events import CONTENT_TYPE
from app.models.json_schema import to_json_schema
from app.models.schema import schema_of
from app.pipeline.config import ConfigError, PipelineFileError
from app.pipeline.topics import is_pattern, topic_matches
from app.pipeline.types import EventsDoc, OperationDoc, PipelineConfig, PipelineFile, PublishedEvent, SubscriptionConfig


def build_asyncapi(
    pipelines: PipelineFile, models: dict[str, type], *, exchange: str,
    title: str = "Turnstile", version: str = "1.0.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the events `pipelines` publish to and consume from `exchange`.

    Raises:
        PipelineFileError: a step documents event data naming a model no plugin registers
            (reported at the step's line).
    """
    published = _published(pipelines)
    _check_models(pipelines, published, models)
    consumed = {key for sub in pipelines.subscriptions for key in sub.bindings if not is_pattern(key)}
    keys = sorted(set(published) | consumed)
    data = {key: _data_schema([source.event for source in published.get(key, [])]) for key in keys}
    messages = {message_id(key): message(key, data[key]) for key in keys}
    channels = {key: routing_key_channel(key, exchange) for key in keys}
    operations = {f"send.{key}": send(key, _publishers(published[key])) for key in sorted(published)}
    for sub in pipelines.subscriptions:
        channel_id = sub.name if sub.name not in channels else f"queue.{sub.name}"
        matched = _matched_keys(sub, keys)
        if ANY_EVENT in matched and ANY_EVENT not in messages:
            messages[ANY_EVENT] = message(ANY_EVENT, unknown_data(), any_type=True)
        channels[channel_id] = queue_channel(sub, exchange, matched)
        operations[f"receive.{sub.name}"] = receive(sub, channel_id, matched)
    schemas = {HEADERS_SCHEMA: EVENT_HEADERS}
    for name in sorted({ref.removeprefix(SCHEMAS_PREFIX) for schema in data.values() for ref in _refs(schema)}):
        schemas[name] = to_json_schema(schema_of(models[name]))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info(title, version, exchange),
        "defaultContentType": CONTENT_TYPE,
        "servers": {SERVER: server(exchange)},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


@attrs.frozen
class _Source:
    """Where a routing key is published: a pipeline, the line of its step, what the step said."""

    pipeline: PipelineConfig
    line: int
    event: PublishedEvent


def _published(pipelines: PipelineFile) -> dict[str, list[_Source]]:
    """Each routing key published, with the pipelines that publish it, in file order."""
    published: dict[str, list[_Source]] = {}
    for pipeline in pipelines.pipelines:
        # The steps' OpenAPI callbacks run first, so a step can say its event carries the answer.
        operation = OperationDoc(pipeline)
        for step in pipeline.steps:
            if step.type.document is not None:
                step.type.document(step.config, operation)
        doc = EventsDoc(pipeline, operation)
        for step in pipeline.steps:
            if step.type.document_events is None:
                continue
            already = len(doc.published)
            step.type.document_events(step.config, doc)
            for event in doc.published[already:]:
                published.setdefault(event.type, []).append(_Source(pipeline, step.line, event))
    return published


def published_events(pipelines: PipelineFile) -> dict[str, list[PublishedEvent]]:
    """Each routing key the pipelines publish, with what each publishing step says its data is."""
    return {key: [source.event for source in sources] for key, sources in _published(pipelines).items()}


def _check_models(pipelines: PipelineFile, published: dict[str, list[_Source]], models: dict[str, type]) -> None:
    errors = [
        ConfigError(str(pipelines.path), source.line, (
            f"pipeline {source.pipeline.name!r}: the data of event {key!r} refers to {ref!r}, "
            "which names no registered model"
        ))
        for key, sources in published.items()
        for source in sources
        for ref in _refs(source.event.data)
        if not ref.startswith(SCHEMAS_PREFIX) or ref.removeprefix(SCHEMAS_PREFIX) not in models
    ]
    if errors:
        raise PipelineFileError(errors)


def _publishers(sources: list[_Source]) -> str:
    lines = [f"Published by {len(sources)} route(s), once the change is committed:"]
    for source in sources:
        route, event = source.pipeline.route, source.event
        note = f": {event.description}" if event.description else ""
        lines.append(f"- `{route.method} {route.plain_path}` ({source.pipeline.name}){note}")
    return "\n".join(lines)


def _data_schema(events: list[PublishedEvent]) -> dict[str, Any]:
    """One schema for the data of a routing key; one alternative each when pipelines differ."""
    distinct: dict[str, dict[str, Any]] = {}
    for event in events:
        schema = to_json_schema(event.data)
        distinct.setdefault(json.dumps(schema, sort_keys=True), schema)
    if not distinct:
        return unknown_data()
    schemas = list(distinct.values())
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _matched_keys(sub: SubscriptionConfig, keys: list[str]) -> list[str]:
    """The documented routing keys a subscription's bindings receive, in order, and
    `ANY_EVENT` when a wildcard binding matches none of them."""
    matched = [key for key in keys if any(topic_matches(binding, key) for binding in sub.bindings)]
    if any(not any(topic_matches(binding, key) for key in keys) for binding in sub.bindings):
        matched.append(ANY_EVENT)
    return matched
