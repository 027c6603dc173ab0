"""The built-in `cache` plugin: the `cache` and `cache-invalidate` steps, and their backend."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app import PipelineFile, Resources, StepKind, StepType, hookimpl, redis_key
from plugins.cache import invalidate, step
from plugins.cache.backend import cache_backend_key, make_backend, mirrored_prefixes
from plugins.cache.config import CacheConfig, CacheInvalidateConfig
from plugins.cache.made import MadeInvalidations, made_invalidations_key
from plugins.cache.rollback import CacheKeyHeads, cache_key_heads_key, empty_on_rollback


@hookimpl
def register_mirrored_keys(app: web.Application, pipelines: PipelineFile) -> list[str]:
    return sorted(set(mirrored_prefixes(pipelines)))


@hookimpl
def setup_app(app: web.Application, resources: Resources) -> None:
    resources.provide(
        cache_backend_key, make_backend(app),
        description=("the cache's store: Redis under the steps' own keys (user:{id}) when REDIS_URL is set, "
                     "else memory (CACHE_MAX_ENTRIES)"),
    )
    resources.provide(
        made_invalidations_key, MadeInvalidations(),
        description="tombstones this process stored right after a write, by event id: its subscriptions skip them",
    )
    heads = resources.provide(
        cache_key_heads_key, CacheKeyHeads(),
        description="the key prefixes of the cache steps: emptied when Redis comes back with older data (§9a)",
    )
    redis = app[redis_key]
    if redis is not None:
        empty_on_rollback(redis, heads)


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="cache", config_cls=CacheConfig, build=step.build, kind=StepKind.WRAPPER, document=step.document),
        StepType(
            name="cache-invalidate",
            config_cls=CacheInvalidateConfig,
            build=invalidate.build,
            kind=StepKind.WRAPPER,
            build_for_message=invalidate.build_for_message,
        ),
    ]
