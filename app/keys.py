"""Every application- and request-scoped key shared between the core and plugins.

Plugin-private keys live in their plugin; the ones here are the shared vocabulary.
"""

from __future__ import annotations

from typing import Any

import pluggy
from aiohttp import web

from app.clients.amqp import Publisher
from app.clients.cache import CacheBackend
from app.clients.dataservice import DataServiceClient
from app.clients.redis import RedisConnection
from app.pipeline.types import Actor, PipelineConfig, PipelineFile
from app.readiness import Readiness
from app.settings import Settings

# --- application --------------------------------------------------------------------------
settings_key = web.AppKey("settings", Settings)
plugin_manager_key = web.AppKey("plugin_manager", pluggy.PluginManager)
pipelines_key = web.AppKey("pipelines", PipelineFile)
readiness_key = web.AppKey("readiness", Readiness)
models_key = web.AppKey("models", dict[str, type[Any]])
# Clients, one of each per process (app/wiring.py makes them from the settings).
data_service_key = web.AppKey("data_service", DataServiceClient)
redis_key: web.AppKey[RedisConnection | None] = web.AppKey("redis")  # None: embedded, no Redis configured
cache_backend_key = web.AppKey("cache_backend", CacheBackend)
publisher_key = web.AppKey("publisher", Publisher)

# --- request ------------------------------------------------------------------------------
request_id_key = web.RequestKey("request_id", str)
pipeline_key = web.RequestKey("pipeline", PipelineConfig)
actor_key = web.RequestKey("actor", Actor)
# The request body after transform_request hooks and schema validation (a JSON object).
body_key = web.RequestKey("body", dict[str, Any])
# The query parameters, converted and validated, for pipelines that declare a query model.
query_key = web.RequestKey("query", dict[str, Any])
# The answer to a write the data service accepted (set by `data-fetch`): the change is
# committed, so steps that must follow every committed change (event-emit, cache-invalidate)
# act on it even when a step after them failed and the request answers an error.
committed_key = web.RequestKey("committed", web.StreamResponse)

# --- response -----------------------------------------------------------------------------
# The JSON-able data a response was made from, so outer steps (cache, event-emit) never
# re-parse the body they wrap.
payload_key = web.ResponseKey("payload", object)
