"""What the account steps answer and change besides the user: the public user (as the data-fetch
step would answer it) and the cache keys that held the old one."""

from __future__ import annotations

import logging
from typing import Any, Final, final

import attrs
import pluggy
from aiohttp import web

from app import (
    BadGateway,
    BuildContext,
    CacheBackend,
    CacheUnavailable,
    InternalError,
    OutageLog,
    PipelineConfig,
    Projection,
    RedisUnavailable,
    ShapeMismatch,
    Template,
    call_chain,
    has_implementations,
    models_key,
    plugin_manager_key,
    projection_of,
)
from plugins.cache.backend import cache_backend_key
from plugins.cache.markers import new_tombstone

log = logging.getLogger("turnstile.accounts")

# As long as `cache-invalidate`'s default: it must outlast a read that fetched the old record.
TOMBSTONE_TTL_S: Final = 30
_outage_log = OutageLog(log, "the cache")


@final
@attrs.frozen
class PublicUser:
    """A stored user record → the public User: only its fields, after the `transform_response`
    hooks (so a field a plugin added to User is filled here as on every other route)."""

    project: Projection
    pipeline: PipelineConfig
    transform_response: pluggy.HookCaller | None

    async def __call__(self, request: web.Request, record: Any) -> dict[str, Any]:
        try:
            data = self.project(record)
        except ShapeMismatch as exc:
            log.warning("pipeline %s: the data service's answer does not fit User: %s", self.pipeline.name, exc)
            msg = "the data service gave an answer this service could not use"
            raise BadGateway(msg) from None
        if self.transform_response is not None:
            data = await call_chain(self.transform_response, "data", data, request=request, pipeline=self.pipeline)
            try:
                data = self.project(data)
            except ShapeMismatch as exc:
                log.error("pipeline %s: the answer after transform_response does not fit User: %s",
                          self.pipeline.name, exc)
                msg = "The answer could not be completed."
                raise InternalError(msg) from None
        assert isinstance(data, dict)
        return data


def public_user(ctx: BuildContext) -> PublicUser:
    hook = ctx.app[plugin_manager_key].hook.transform_response
    return PublicUser(
        project=projection_of(ctx.app[models_key]["User"]),
        pipeline=ctx.pipeline,
        transform_response=hook if has_implementations(hook) else None,
    )


@final
@attrs.frozen
class CacheKeys:
    """Cache keys naming a user (templates over the user's fields), tombstoned after a change as
    `cache-invalidate` does, so no read that raced the change stores the old record."""

    keys: tuple[Template, ...]
    cache: CacheBackend

    async def invalidate(self, user: dict[str, Any]) -> None:
        """Tombstone the keys; a cache outage is logged, never raised: the change stands."""
        try:
            for key in self.keys:
                await self.cache.set(key.for_data(user), new_tombstone(), TOMBSTONE_TTL_S)
        except (CacheUnavailable, RedisUnavailable, TimeoutError) as exc:
            _outage_log.warning("invalidating a changed user", exc)


def cache_keys(templates: tuple[str, ...], ctx: BuildContext) -> CacheKeys:
    return CacheKeys(tuple(Template(key) for key in templates), ctx.app[cache_backend_key])
