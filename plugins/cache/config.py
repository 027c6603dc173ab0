"""Settings of the `cache` and `cache-invalidate` steps."""

from __future__ import annotations

from typing import Any, NewType

from attrs import field, frozen
from attrs.validators import ge, gt

from app.converter import converter
from app.pipeline.template import check_template
from app.pipeline.types import template_field

# cattrs would structure `keys = "user:{id}"` into a tuple of characters; this type refuses it.
KeyTemplates = NewType("KeyTemplates", tuple[str, ...])


def _structure_key_templates(value: Any, _type: Any) -> KeyTemplates:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        msg = f"expected a list of key templates such as [\"user:{{id}}\"], got {value!r}"
        raise TypeError(msg)
    return KeyTemplates(tuple(value))


converter.register_structure_hook(KeyTemplates, _structure_key_templates)


def _check_keys(inst: object, attribute: Any, value: KeyTemplates) -> None:
    if not value:
        msg = "keys: name at least one key"
        raise ValueError(msg)
    for key in value:
        check_template(inst, attribute, key)


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

    keys: KeyTemplates = template_field(validator=_check_keys)
