"""Settings of the `cache` and `cache-invalidate` steps."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from attrs.validators import ge, gt

from app import Templates, check_template, check_templates, template_field


def _check_keys(inst: object, attribute: Any, value: Templates) -> None:
    if not value:
        msg = "keys: name at least one key"
        raise ValueError(msg)
    check_templates(inst, attribute, value)


def _not_longer_than_ttl(inst: CacheConfig, _attribute: Any, value: int) -> None:
    if value > inst.ttl_s:
        msg = f"not_found_ttl_s ({value}) must not exceed ttl_s ({inst.ttl_s})"
        raise ValueError(msg)


@frozen(kw_only=True)
class CacheConfig:
    """`{ use = "cache", key = "user:{id}", ttl_s = 3600, not_found_ttl_s = 0, fail_open = true }`

    key: the cache key, a template over the route parameters and ``{actor}``.
    ttl_s: lifetime in seconds of a stored 200 answer (> 0).
    not_found_ttl_s: lifetime of a remembered 404 (0, the default: 404s are not cached; at most
        ttl_s). Nothing that creates a record drops a remembered 404 of its key (its id comes
        with the answer), so with it on a record created meanwhile, its owner included, reads
        as 404 until it ends: for keys that never name a resource yet to be created. A user's
        missing record (data-fetch's `UserNotFound`) is never remembered: it is 401 to that user.
    fail_open: when the cache backend is down or slow, answer from the rest of the chain with
        ``X-Cache: BYPASS`` (Kong's fault_tolerant); false answers 503 instead.
    """

    key: str = template_field(validator=check_template)
    ttl_s: int = field(default=3600, validator=gt(0))
    not_found_ttl_s: int = field(default=0, validator=[ge(0), _not_longer_than_ttl])
    fail_open: bool = True


@frozen(kw_only=True)
class CacheInvalidateConfig:
    """`{ use = "cache-invalidate", keys = ["user:{id}"], tombstone_ttl_s = 30 }`

    keys: cache keys to invalidate after the rest of the chain answered 2xx; templates over
        the route parameters and ``{actor}`` (in a subscription: over fields of the event's
        ``data``, e.g. ``{id}`` is ``event.data["id"]``).
    tombstone_ttl_s: each key is overwritten with a unique tombstone for at most this many
        seconds (> 0) rather than deleted. The next `cache` read that finds it is a miss whose
        answer replaces it (compare-and-set), so caching resumes at once; the TTL only bounds
        how long a tombstone sits when no read comes. A read that missed before the write
        cannot store the old answer it fetched while the tombstone lives (its fill is
        add-if-absent), so it must outlast the longest fill, from the data-service call to the
        store: with the default data-service settings (5 s per attempt, 2 retries, at most
        0.15 s of backoff, a Redis write of ~1.5 s at worst) about 17 s; 30 s leaves a margin.
        Raise it with ``DATA_SERVICE_TIMEOUT_S`` or ``DATA_SERVICE_RETRIES``.
    """

    keys: Templates = template_field(validator=_check_keys)
    tombstone_ttl_s: int = field(default=30, validator=gt(0))
