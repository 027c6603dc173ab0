"""Turnstile: a business service on aiohttp whose every route is a pipeline of plugin steps.

This package's namespace is the public API for plugins, the built-in ones included: a plugin
imports from ``app`` and from nothing under it (a test holds the built-ins to that). What is
not exported here may change without notice. docs/plugins.md explains each group.
"""

from app.admin import create_admin_if_absent
from app.clients.amqp import Publisher
from app.clients.cache import CacheBackend, CacheUnavailable
from app.clients.dataservice import DataService
from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors
from app.clients.singleflight import SingleFlight
from app.converter import converter
from app.errors import (
    BadGateway,
    Conflict,
    FieldError,
    Forbidden,
    GatewayTimeout,
    InternalError,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from app.hookspecs import hookimpl, hookspec
from app.keys import (
    actor_key,
    body_key,
    cache_backend_key,
    committed_key,
    data_service_key,
    models_key,
    payload_key,
    pipeline_key,
    plugin_manager_key,
    publisher_key,
    query_key,
    readiness_key,
    redis_key,
    request_id_key,
    settings_key,
)
from app.models.events import Event
from app.models.projection import Projection, ShapeMismatch, projection_of
from app.models.schema import schema_field, schema_of
from app.outage import OutageLog
from app.passwords import PasswordHasher, hasher_for
from app.pipeline.template import Template, check_template, template_placeholders
from app.pipeline.types import (
    BEARER_SCHEME,
    RESERVED_PLACEHOLDERS,
    Actor,
    BuildContext,
    CheckContext,
    ConfiguredStep,
    Handler,
    MessageHandler,
    MessageStep,
    OperationDoc,
    PipelineConfig,
    Route,
    Step,
    StepKind,
    StepType,
    SubscriptionConfig,
    SubscriptionContext,
    model_ref,
    template_field,
)
from app.plugins import call_all, call_chain, has_implementations
from app.proxies import client_address
from app.settings import Settings

__all__ = [
    "BEARER_SCHEME",
    "RESERVED_PLACEHOLDERS",
    "Actor",
    "BadGateway",
    "BuildContext",
    "CacheBackend",
    "CacheUnavailable",
    "CheckContext",
    "ConfiguredStep",
    "Conflict",
    "DataService",
    "Event",
    "FieldError",
    "Forbidden",
    "GatewayTimeout",
    "Handler",
    "InternalError",
    "MessageHandler",
    "MessageStep",
    "NotFound",
    "OperationDoc",
    "OutageLog",
    "PasswordHasher",
    "PipelineConfig",
    "ProblemError",
    "Projection",
    "Publisher",
    "RedisConnection",
    "RedisUnavailable",
    "Route",
    "ServiceUnavailable",
    "Settings",
    "ShapeMismatch",
    "SingleFlight",
    "Step",
    "StepKind",
    "StepType",
    "SubscriptionConfig",
    "SubscriptionContext",
    "Template",
    "TooManyRequests",
    "Unauthorized",
    "ValidationFailed",
    "actor_key",
    "body_key",
    "cache_backend_key",
    "call_all",
    "call_chain",
    "check_template",
    "client_address",
    "committed_key",
    "converter",
    "create_admin_if_absent",
    "data_service_key",
    "has_implementations",
    "hasher_for",
    "hookimpl",
    "hookspec",
    "model_ref",
    "models_key",
    "payload_key",
    "pipeline_key",
    "plugin_manager_key",
    "projection_of",
    "publisher_key",
    "query_key",
    "readiness_key",
    "redis_errors",
    "redis_key",
    "request_id_key",
    "schema_field",
    "schema_of",
    "settings_key",
    "template_field",
    "template_placeholders",
]
