"""The objects of the AsyncAPI 3.0 document: the broker, channels, messages and operations.

Each function writes one object as AsyncAPI 3.0.0 and its AMQP bindings (0.3.0) say it;
`app.asyncapi.document` decides which ones the document holds.
"""

from __future__ import annotations

import re
from typing import Any, Final

from app.models.events import APP_ID, CONTENT_TYPE, PERSISTENT, REQUEST_ID_HEADER
from app.pipeline.types import SubscriptionConfig

ASYNCAPI_VERSION: Final = "3.0.0"
AMQP_BINDING: Final = "0.3.0"
SERVER: Final = "rabbitmq"
HEADERS_SCHEMA: Final = "EventHeaders"
# The message a wildcard binding stands for when it matches no routing key documented here.
ANY_EVENT: Final = "any-event"
SCHEMAS_PREFIX: Final = "#/components/schemas/"
_NOT_IN_COMPONENT_NAMES: Final = re.compile(r"[^A-Za-z0-9_.-]")

EVENT_HEADERS: Final[dict[str, Any]] = {
    "type": "object",
    "description": "AMQP headers of every event.",
    "required": [REQUEST_ID_HEADER],
    "properties": {
        REQUEST_ID_HEADER: {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,128}$",
            "description": "The X-Request-ID of the request that caused the event (its `request_id`).",
        },
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C Trace Context of the request that published the event. Present when "
                           "tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT set); a consumer continues that trace.",
        },
    },
}


def info(title: str, version: str, exchange: str) -> dict[str, Any]:
    return {
        "title": f"{title} events",
        "version": version,
        "description": (
            f"The domain events {title} publishes to the `{exchange}` topic exchange, and those it "
            "consumes. Delivery is at least once (events wait in a durable outbox while the broker "
            "is away, and are delivered in order once it is back): consumers dedupe by `message_id`, "
            "the event's `id`."
        ),
    }


def server(exchange: str) -> dict[str, Any]:
    return {
        "host": "{host}",
        "protocol": "amqp",
        "protocolVersion": "0.9.1",
        "title": "RabbitMQ",
        "description": (
            f"The broker RABBITMQ_URL names (`amqps://` for TLS); events go to its `{exchange}` topic "
            "exchange (durable; the name is set by EVENTS_EXCHANGE). Without RABBITMQ_URL the same "
            "events are written to the log and to `./var/events.jsonl`."
        ),
        "variables": {"host": {"default": "localhost:5672", "description": "host:port of RABBITMQ_URL"}},
    }


def _exchange_binding(exchange: str) -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {"name": exchange, "type": "topic", "durable": True, "autoDelete": False},
        "bindingVersion": AMQP_BINDING,
    }


def routing_key_channel(key: str, exchange: str) -> dict[str, Any]:
    return {
        "address": key,
        "title": key,
        "description": f"Routing key `{key}` on the `{exchange}` topic exchange.",
        "messages": _message_refs([key]),
        "bindings": {"amqp": _exchange_binding(exchange)},
    }


def queue_channel(sub: SubscriptionConfig, exchange: str, keys: list[str]) -> dict[str, Any]:
    bound = f"bound to the `{exchange}` exchange with {_code_list(sub.bindings)}"
    if sub.delivery == "each-instance":
        # Each process declares a queue of its own, exclusive to its connection: the name is a
        # template, as the process's host, id and a random part complete it (instance_queue_name).
        address = f"{sub.queue}.{{instance}}"
        return {
            "address": address,
            "title": f"Queues {sub.queue}.*",
            "description": (
                f"The queue of each process of subscription `{sub.name}` (every process hears every "
                f"event), {bound}: exclusive to the process's connection and deleted with it."
            ),
            "parameters": {"instance": {
                "description": "The process: its host name, process id and six random hex digits, "
                               "`<host>.<pid>.<random>`.",
            }},
            "messages": _message_refs(keys),
            "bindings": {"amqp": {
                "is": "queue",
                "queue": {"name": address, "durable": False, "exclusive": True, "autoDelete": True},
                "bindingVersion": AMQP_BINDING,
            }},
        }
    return {
        "address": sub.queue,
        "title": f"Queue {sub.queue}",
        "description": f"The durable queue of subscription `{sub.name}` (its events shared by the processes), {bound}.",
        "messages": _message_refs(keys),
        "bindings": {"amqp": {
            "is": "queue",
            "queue": {"name": sub.queue, "durable": True, "exclusive": False, "autoDelete": False},
            "bindingVersion": AMQP_BINDING,
        }},
    }


def unknown_data() -> dict[str, Any]:
    """The data of an event no route here publishes: whatever its producer put in."""
    return {"type": "object", "description": "As the producer sent it: no route of this service publishes it."}


def message(key: str, data: dict[str, Any], *, any_type: bool = False) -> dict[str, Any]:
    event_type = {"type": "string", "description": "The event type, also its routing key."}
    if not any_type:
        event_type["const"] = key
    return {
        "name": key,
        "title": "Any event" if any_type else key,
        "summary": "Any event a wildcard binding receives." if any_type else f"The `{key}` event.",
        "contentType": CONTENT_TYPE,
        "correlationId": {
            "location": f"$message.header#/{REQUEST_ID_HEADER}",
            "description": "The request that caused the event: its X-Request-ID.",
        },
        "headers": {"$ref": SCHEMAS_PREFIX + HEADERS_SCHEMA},
        "payload": {
            "type": "object",
            "description": "The event: the same envelope for every type, its `data` per type.",
            "required": ["id", "type", "occurred_at", "request_id", "data"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "format": "uuid",
                       "description": "The event's id, also its AMQP `message_id`: consumers dedupe by it."},
                "type": event_type,
                "occurred_at": {"type": "string", "format": "date-time",
                                "description": "When the change was announced: stamped once the data service "
                                               "answered (RFC 3339, UTC). Two writes to one user at the same moment "
                                               "may carry them out of the order the data service saved them in; "
                                               "`data.updated_at` orders those."},
                "request_id": {"type": "string", "description": "The X-Request-ID of the request that caused it."},
                "data": data,
            },
        },
        "bindings": {"amqp": {
            "messageType": "(the event type)" if any_type else key,
            "bindingVersion": AMQP_BINDING,
            # The AMQP binding has no fields for these basic properties; every event carries them.
            "x-properties": {
                "message_id": "the event's id",
                "content_type": CONTENT_TYPE,
                "delivery_mode": PERSISTENT,
                "timestamp": "occurred_at, to the second",
                "app_id": APP_ID,
                "type": "the event type",
            },
        }},
    }


def send(key: str, description: str) -> dict[str, Any]:
    return {
        "action": "send",
        "channel": {"$ref": _pointer("channels", key)},
        "messages": [{"$ref": _pointer("channels", key, "messages", message_id(key))}],
        "title": f"Publish {key}",
        "summary": f"`{key}` after a successful write.",
        "description": description,
        # Persistent, time-stamped, and mandatory: an unroutable event is logged and counted.
        "bindings": {"amqp": {"deliveryMode": PERSISTENT, "mandatory": True, "timestamp": True,
                              "bindingVersion": AMQP_BINDING}},
    }


def receive(sub: SubscriptionConfig, channel_id: str, keys: list[str]) -> dict[str, Any]:
    steps = " → ".join(f"`{step.type.name}`" for step in sub.steps)
    return {
        "action": "receive",
        "channel": {"$ref": _pointer("channels", channel_id)},
        "messages": [{"$ref": _pointer("channels", channel_id, "messages", message_id(key))} for key in keys],
        "title": f"Subscription {sub.name}",
        "summary": f"Consumes {_code_list(sub.bindings)} from queue `{sub.queue}`.",
        "description": (
            f"Steps: {steps}. A message is acked after its steps succeed; one that fails while "
            f"its dependencies are up is retried {sub.max_retries} time(s), then dead-lettered."
        ),
        "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}},
    }


def _message_refs(keys: list[str]) -> dict[str, Any]:
    return {message_id(key): {"$ref": _pointer("components", "messages", message_id(key))} for key in keys}


def message_id(key: str) -> str:
    """A component name for a routing key (AsyncAPI allows only letters, digits, `.`, `-`, `_`)."""
    return _NOT_IN_COMPONENT_NAMES.sub("_", key)


def _pointer(*parts: str) -> str:
    """A JSON pointer into this document (RFC 6901 escapes)."""
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _code_list(items: tuple[str, ...]) -> str:
    return ", ".join(f"`{item}`" for item in items)
