"""Every application- and request-scoped key shared between the core and plugins.

Plugin-private keys live in their plugin; the ones here are the shared vocabulary.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy
from aiohttp import web

from app.clients.amqp import Publisher
from app.clients.dataservice import DataServiceClient
from app.clients.redis import RedisConnection
from app.pipeline.types import Actor, PipelineConfig, PipelineFile
from app.readiness import Readiness
from app.settings import Settings


class PasswordHasher(Protocol):
    """Password hashing, as the plugin that owns it (the built-in `auth`: argon2id) provides
    it to others under `password_hasher_key` at start-up; both calls may take a while (run
    off the event loop)."""

    async def hash(self, password: str) -> str:
        """The hash of `password`, in a form `verify` takes."""
        ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether `password` matches `password_hash`; False also for a malformed hash."""
        ...


# --- application --------------------------------------------------------------------------
settings_key = web.AppKey("settings", Settings)
plugin_manager_key = web.AppKey("plugin_manager", pluggy.PluginManager)
pipelines_key = web.AppKey("pipelines", PipelineFile)
readiness_key = web.AppKey("readiness", Readiness)
models_key = web.AppKey("models", dict[str, type[Any]])
# Clients, one of each per process (app/wiring.py makes them from the settings).
data_service_key = web.AppKey("data_service", DataServiceClient)
redis_key: web.AppKey[RedisConnection | None] = web.AppKey("redis")  # None: embedded, no Redis configured
publisher_key = web.AppKey("publisher", Publisher)
# Filled by the plugin that owns password hashing (the built-in auth plugin) in `setup_app`;
# absent when no plugin does, and then nothing may store a password.
password_hasher_key: web.AppKey[PasswordHasher] = web.AppKey("password_hasher")

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
# When the data service accepted that write (RFC 3339, stamped as its answer came; set by the steps
# that write): the time its event says the change occurred. Stamped once the whole chain had run,
# an update that committed before a delete could carry the later time, and a consumer ordering by
# it would bring the deleted user back.
committed_at_key = web.RequestKey("committed_at", str)
# Set by `data-fetch` when a write reached the data service but its answer was lost and reading
# the record back could not tell whether it was applied: steps that must follow a change that
# may have been made (cache-invalidate, revoke-tokens) act as if it was; the request's error stands.
outcome_unknown_key = web.RequestKey("outcome_unknown", bool)
# The id of the event this request's `event-emit` step will publish, set before the steps it
# wraps run: a step can tie what it did to the event (the cache plugin records the tombstones
# it stored, so its subscriptions need not write them again for this very event).
event_id_key = web.RequestKey("event_id", str)

# --- response -----------------------------------------------------------------------------
# The JSON-able data a response was made from, so outer steps (cache, event-emit) never
# re-parse the body they wrap.
payload_key = web.ResponseKey("payload", object)
