"""The cache plugin's backend: Redis when the core has a connection, else process memory.

Keys are the step's `key` templates as written: ``user:{id}`` is the Redis key ``user:7``, as the
contract names it (§8; every other key of the service is under ``turnstile:``). The literal head
of each `cache` step's key (``user:``) is mirrored in process memory: a cached read hits it on
every request, while writes are rare.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from aiohttp import web

from app import CacheBackend, MemoryCache, PipelineFile, RedisCache, redis_key, settings_key
from plugins.cache.config import CacheConfig

KEY_PREFIX: Final = ""  # the keys as the pipelines file writes them

cache_backend_key: Final[web.AppKey[CacheBackend]] = web.AppKey("cache_backend")


def make_backend(app: web.Application) -> CacheBackend:
    redis = app[redis_key]
    if redis is not None:
        return RedisCache(redis, prefix=KEY_PREFIX)
    return MemoryCache(max_entries=app[settings_key].cache_max_entries)


def mirrored_prefixes(pipelines: PipelineFile) -> Iterator[str]:
    """The Redis prefix of every `cache` step's key: its text before the first placeholder.

    A key that starts with a placeholder names no useful prefix and is not mirrored.
    """
    for pipeline in pipelines.pipelines:
        for configured in pipeline.steps:
            if isinstance(configured.config, CacheConfig):
                head = configured.config.key.split("{", 1)[0]
                if head:
                    yield KEY_PREFIX + head
