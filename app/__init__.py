"""Turnstile: a business service on aiohttp whose every route is a pipeline of plugin steps.

This package's namespace is the public API for plugins, the built-in ones included: a plugin
imports from ``app`` and from nothing under it (a test holds the built-ins to that). What is
not exported here may change without notice. docs/plugins.md explains each group.
"""

import signal as _signal
import sys as _sys
from pathlib import Path as _Path

# `turnstile serve` (or `python -m app serve`): SIGHUP asks for a reload, but its default action
# ends the process, and the server handles it only once the app is imported and built (about
# half a second): a reload asked for meanwhile (config management right after a restart) ended
# the service. Ignored from the first line the package runs; the server's handler replaces this.
if _sys.argv[1:2] == ["serve"] and (_sys.argv[0] == "-m" or _Path(_sys.argv[0]).name == "turnstile"):
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)

from app.answers import json_response
from app.clients.amqp import Publisher
from app.clients.cache import CacheBackend, CacheUnavailable, LeaseClaim, MemoryCache, Read, RedisCache
from app.clients.counters import MemoryWindowCounter, RedisWindowCounter, WindowCounter
from app.clients.dataservice import DataService, UpstreamReply
from app.clients.redis import RedisConnection, RedisUnavailable, redis_errors
from app.clients.redis.rollback import RollbackWatch
from app.clients.retry import Backoff
from app.clients.singleflight import SingleFlight
from app.commands import Command, CommandContext
from app.converter import converter
from app.errors import (
    BadGateway,
    Conflict,
    FieldError,
    Forbidden,
    GatewayTimeout,
    InternalError,
    MalformedRequest,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UserNotFound,
    ValidationFailed,
)
from app.hookspecs import hookimpl, hookspec
from app.keys import (
    PasswordHasher,
    actor_key,
    body_key,
    committed_at_key,
    committed_key,
    data_service_key,
    event_id_key,
    models_key,
    outcome_unknown_key,
    password_hasher_key,
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
from app.middlewares.request_id import current_request_id
from app.models.events import Event, EventDecodeError, parse_rfc3339, utc_now_rfc3339
from app.models.projection import Projection, ShapeMismatch, projection_of
from app.models.schema import schema_field, schema_of
from app.outage import OutageLog
from app.pipeline.body import read_body
from app.pipeline.template import Template, check_template, template_placeholders
from app.pipeline.template_list import Templates, check_templates
from app.pipeline.types import (
    BEARER_SCHEME,
    RESERVED_PLACEHOLDERS,
    Actor,
    BuildContext,
    CheckContext,
    ConfiguredStep,
    EventsDoc,
    Handler,
    MessageHandler,
    MessageStep,
    OperationDoc,
    PipelineConfig,
    PipelineFile,
    Route,
    Step,
    StepKind,
    StepType,
    SubscriptionConfig,
    SubscriptionContext,
    model_ref,
    template_field,
)
from app.plugin_routes import PluginRoute
from app.plugin_settings import plugin_settings, positive_int, setting
from app.plugins import call_all, call_chain, has_implementations
from app.proxies import client_address
from app.resources import Resources
from app.settings import Settings, SettingsError
from app.shielding import complete_despite_cancellation
from app.upstreams import Upstreams, upstreams_key
from app.workers import Worker, this_worker

__all__ = [
    "BEARER_SCHEME",
    "RESERVED_PLACEHOLDERS",
    "Actor",
    "Backoff",
    "BadGateway",
    "BuildContext",
    "CacheBackend",
    "CacheUnavailable",
    "CheckContext",
    "Command",
    "CommandContext",
    "ConfiguredStep",
    "Conflict",
    "DataService",
    "Event",
    "EventDecodeError",
    "EventsDoc",
    "FieldError",
    "Forbidden",
    "GatewayTimeout",
    "Handler",
    "InternalError",
    "LeaseClaim",
    "MalformedRequest",
    "MemoryCache",
    "MemoryWindowCounter",
    "MessageHandler",
    "MessageStep",
    "NotFound",
    "OperationDoc",
    "OutageLog",
    "PasswordHasher",
    "PipelineConfig",
    "PipelineFile",
    "PluginRoute",
    "ProblemError",
    "Projection",
    "Publisher",
    "Read",
    "RedisCache",
    "RedisConnection",
    "RedisUnavailable",
    "RedisWindowCounter",
    "Resources",
    "RollbackWatch",
    "Route",
    "ServiceUnavailable",
    "Settings",
    "SettingsError",
    "ShapeMismatch",
    "SingleFlight",
    "Step",
    "StepKind",
    "StepType",
    "SubscriptionConfig",
    "SubscriptionContext",
    "Template",
    "Templates",
    "TooManyRequests",
    "Unauthorized",
    "UpstreamReply",
    "Upstreams",
    "UserNotFound",
    "ValidationFailed",
    "WindowCounter",
    "Worker",
    "actor_key",
    "body_key",
    "call_all",
    "call_chain",
    "check_template",
    "check_templates",
    "client_address",
    "committed_at_key",
    "committed_key",
    "complete_despite_cancellation",
    "converter",
    "current_request_id",
    "data_service_key",
    "event_id_key",
    "has_implementations",
    "hookimpl",
    "hookspec",
    "json_response",
    "model_ref",
    "models_key",
    "outcome_unknown_key",
    "parse_rfc3339",
    "password_hasher_key",
    "payload_key",
    "pipeline_key",
    "plugin_manager_key",
    "plugin_settings",
    "positive_int",
    "projection_of",
    "publisher_key",
    "query_key",
    "read_body",
    "readiness_key",
    "redis_errors",
    "redis_key",
    "request_id_key",
    "schema_field",
    "schema_of",
    "setting",
    "settings_key",
    "template_field",
    "template_placeholders",
    "this_worker",
    "upstreams_key",
    "utc_now_rfc3339",
]
