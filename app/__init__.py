"""Turnstile: a business service on aiohttp whose every route is a pipeline of plugin steps.

What plugin authors may rely on is re-exported here; everything else may change.
"""

from app.errors import (
    BadGateway,
    Conflict,
    FieldError,
    Forbidden,
    GatewayTimeout,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from app.hookspecs import hookimpl
from app.keys import Actor, actor_key, body_key, payload_key, query_key, request_id_key
from app.models.projection import Projection, ShapeMismatch, projection_of
from app.models.schema import schema_field
from app.pipeline.docs import OperationDoc
from app.pipeline.event_docs import EventsDoc
from app.pipeline.types import (
    BuildContext,
    CheckContext,
    Handler,
    MessageHandler,
    MessageStep,
    Step,
    StepKind,
    StepType,
    SubscriptionContext,
    template_field,
)
from app.proxies import client_address

__all__ = [
    "Actor",
    "BadGateway",
    "BuildContext",
    "CheckContext",
    "Conflict",
    "EventsDoc",
    "FieldError",
    "Forbidden",
    "GatewayTimeout",
    "Handler",
    "MessageHandler",
    "MessageStep",
    "NotFound",
    "OperationDoc",
    "ProblemError",
    "Projection",
    "ServiceUnavailable",
    "ShapeMismatch",
    "Step",
    "StepKind",
    "StepType",
    "SubscriptionContext",
    "TooManyRequests",
    "Unauthorized",
    "ValidationFailed",
    "actor_key",
    "body_key",
    "client_address",
    "hookimpl",
    "payload_key",
    "projection_of",
    "query_key",
    "request_id_key",
    "schema_field",
    "template_field",
]
