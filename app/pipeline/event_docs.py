"""What the steps of one pipeline say about the events it publishes, for the events' docs.

Each step type's `document_events` callback records the events its step publishes and the
schema of their ``data``; `app.asyncapi` turns what every pipeline recorded into the AsyncAPI
document. Schemas are OpenAPI 3.0 schema objects, as the models give them; a registered model
is named by its name (or `model_ref`), as in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import attrs

from app.pipeline.config import PipelineConfig
from app.pipeline.docs import OperationDoc, model_ref


@attrs.frozen
class PublishedEvent:
    """One event type a pipeline publishes: its routing key, its ``data`` schema, a note."""

    type: str
    data: dict[str, Any]
    description: str | None = None


@attrs.define
class EventsDoc:
    """Filled by the `document_events` callbacks of one pipeline's steps.

    pipeline: the pipeline being documented.
    operation: its OpenAPI operation as its steps documented it, so a step can say its
      event carries what the route answers (`response_schema`).
    """

    pipeline: PipelineConfig
    operation: OperationDoc
    published: list[PublishedEvent] = attrs.Factory(list)

    def publishes(self, event_type: str, *, data: dict[str, Any] | str, description: str | None = None) -> None:
        """The pipeline publishes `event_type` (its routing key); `data` is the schema of the
        event's data, or the name of a registered model; `description` says when or what."""
        schema = model_ref(data) if isinstance(data, str) else data
        self.published.append(PublishedEvent(event_type, schema, description))

    def response_schema(self) -> dict[str, Any] | None:
        """The schema of the route's success answer (its first 2xx with a JSON body), if any."""
        for status, response in sorted(self.operation.responses.items()):
            if not status.startswith("2"):
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                return dict(schema)
        return None

    def route_params_schema(self) -> dict[str, Any]:
        """An object of the route's parameters, e.g. ``{"id": 7}`` for ``/users/{id:int}``."""
        route = self.pipeline.route
        properties = {
            name: {"type": "integer", "format": "int64"} if name in route.int_params else {"type": "string"}
            for name in route.params
        }
        schema: dict[str, Any] = {"type": "object", "description": "The route's parameters.", "properties": properties}
        if route.params:
            schema["required"] = list(route.params)
        return schema
