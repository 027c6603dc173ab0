"""Placeholders of subscriptions' steps checked against the events they receive (contract §10).

In a subscription a step's templates name fields of the event's ``data`` (``user:{id}``). One that
names no such field fails on every message at run time, which is retried and dead-lettered; so
`turnstile check` reports it, with its line, as it reports a pipeline's placeholder that names no
route parameter. What each event's ``data`` holds is what the AsyncAPI document says: the models
of the pipelines that publish it. A placeholder must name a field of every event the subscription
receives (the data of `user.deleted` is the id alone).

Only what can be known is checked: a subscription bound to a routing key this file does not
publish (another producer's events), or to a pattern, is left alone, and so is every
subscription while a plugin's `enrich_event` hook may add fields to the data; `{actor}` (the
caller of a request) is refused in every subscription.
"""

from __future__ import annotations

from typing import Any

from app.asyncapi.objects import SCHEMAS_PREFIX
from app.models.json_schema import to_json_schema
from app.models.schema import schema_of
from app.pipeline.config import ConfigError
from app.pipeline.template import template_placeholders, template_settings
from app.pipeline.topics import is_pattern
from app.pipeline.types import RESERVED_PLACEHOLDERS, PipelineFile, PublishedEvent, SubscriptionConfig


def subscription_placeholder_errors(
    pipelines: PipelineFile, published: dict[str, list[PublishedEvent]], models: dict[str, type], *,
    data_may_grow: bool = False,
) -> list[ConfigError]:
    """A `ConfigError` for each placeholder of a subscription's step that names no field of some
    event it receives (see the module's docstring for what is left unchecked), and for each
    that names the caller (`{actor}`: an event has none). `data_may_grow`: a plugin's
    `enrich_event` may add fields, so only `{actor}` is sure to be wrong."""
    errors = []
    for sub in pipelines.subscriptions:
        fields = None if data_may_grow else _fields_of_every(sub, published, models)
        for index, step in enumerate(sub.steps):
            for name, template in template_settings(step.config):
                named = set(template_placeholders(template))
                wrong = named & RESERVED_PLACEHOLDERS if fields is None else named - fields
                for placeholder in sorted(wrong):
                    where = f"subscription {sub.name!r}, step {index + 1} ({step.type.name}): {name}: placeholder"
                    if placeholder in RESERVED_PLACEHOLDERS:
                        why = "names the caller of a request, and an event has none"
                    else:
                        why = (f"names no field of every event it receives "
                               f"({', '.join(sub.bindings)}: {', '.join(sorted(fields or ())) or 'none'})")
                    errors.append(ConfigError(str(pipelines.path), step.line, f"{where} {{{placeholder}}} {why}"))
    return errors


def _fields_of_every(
    sub: SubscriptionConfig, published: dict[str, list[PublishedEvent]], models: dict[str, type]
) -> frozenset[str] | None:
    """The fields the data of every event `sub` receives has; None when that cannot be known."""
    fields: frozenset[str] | None = None
    for key in sub.bindings:
        if is_pattern(key) or key not in published:
            return None
        for event in published[key]:
            names = _field_names(event.data, models)
            if names is None:
                return None
            fields = names if fields is None else fields & names
    return fields


def _field_names(schema: dict[str, Any], models: dict[str, type]) -> frozenset[str] | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(SCHEMAS_PREFIX) and ref.removeprefix(SCHEMAS_PREFIX) in models:
        schema = to_json_schema(schema_of(models[ref.removeprefix(SCHEMAS_PREFIX)]))
    properties = schema.get("properties")
    if not isinstance(properties, dict) or schema.get("additionalProperties", False) is not False:
        return None
    return frozenset(properties)

