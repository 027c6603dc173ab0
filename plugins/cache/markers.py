"""Values the cache steps store that are not answers. None is JSON, so no stored body can equal one."""

from __future__ import annotations

from typing import Final
from uuid import uuid4

# A remembered 404 (the `cache` step's `not_found_ttl_s`).
NOT_FOUND_MARKER: Final = b"\x00turnstile:404"
# `cache-invalidate` overwrites a key with a tombstone, each one unique (this prefix and a
# random token), instead of deleting it. A read that finds tombstone T misses, and stores its
# answer only if the key still holds exactly T (compare-and-set): it started after the write,
# so its answer is fresh. A fill that started before the write found no key and stores only if
# the key is still empty (add-if-absent), so the tombstone refuses it; one that found an older
# tombstone is refused by the compare-and-set, because the key now holds a newer one.
TOMBSTONE_PREFIX: Final = b"\x00turnstile:invalidated:"


def new_tombstone() -> bytes:
    """A tombstone no other invalidation writes."""
    return TOMBSTONE_PREFIX + uuid4().hex.encode()


def is_tombstone(value: bytes | None) -> bool:
    return value is not None and value.startswith(TOMBSTONE_PREFIX)
