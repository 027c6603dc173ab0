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
from app.keys import Actor, actor_key, body_key, payload_key, request_id_key
from app.pipeline.types import BuildContext, Handler, MessageStep, Step, StepKind, StepType, template_field

__all__ = [
    "Actor",
    "BadGateway",
    "BuildContext",
    "Conflict",
    "FieldError",
    "Forbidden",
    "GatewayTimeout",
    "Handler",
    "MessageStep",
    "NotFound",
    "ProblemError",
    "ServiceUnavailable",
    "Step",
    "StepKind",
    "StepType",
    "TooManyRequests",
    "Unauthorized",
    "ValidationFailed",
    "actor_key",
    "body_key",
    "hookimpl",
    "payload_key",
    "request_id_key",
    "template_field",
]
