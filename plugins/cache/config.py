"""Settings of the `cache` and `cache-invalidate` steps."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from attrs.validators import deep_iterable, ge, gt, min_len

from app.pipeline.types import template_field
from plugins.data_fetch.template import check_template


def _not_longer_than_ttl(inst: CacheConfig, _attribute: Any, value: int) -> None:
    if value > inst.ttl_s:
        msg = f"not_found_ttl_s ({value}) must not exceed ttl_s ({inst.ttl_s})"
        raise ValueError(msg)


@frozen(kw_only=True)
class CacheConfig:
    """`{ use = "cache", key = "user:{id}", ttl_s = 3600, not_found_ttl_s = 30, fail_open = true }`

    key: the cache key, a template over the route parameters and ``{actor}``.
    ttl_s: lifetime in seconds of a stored 200 answer (> 0).
    not_found_ttl_s: lifetime of a remembered 404, kept short so a created resource shows up
        soon (0: 404s are not cached; at most ttl_s).
    fail_open: when the cache backend is down or slow, answer from the rest of the chain with
        ``X-Cache: BYPASS`` (Kong's fault_tolerant); false answers 503 instead.
    """

    key: str = template_field(validator=check_template)
    ttl_s: int = field(default=3600, validator=gt(0))
    not_found_ttl_s: int = field(default=30, validator=[ge(0), _not_longer_than_ttl])
    fail_open: bool = True


@frozen(kw_only=True)
class CacheInvalidateConfig:
    """`{ use = "cache-invalidate", keys = ["user:{id}"] }`

    keys: cache keys to delete after the rest of the chain answered 2xx; templates over the
        route parameters and ``{actor}`` (in a subscription: over fields of the event's
        ``data``, e.g. ``{id}`` is ``event.data["id"]``).
    """

    keys: tuple[str, ...] = field(validator=[min_len(1), deep_iterable(check_template)])
