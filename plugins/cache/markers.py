"""Values the cache steps store that are not answers. Neither is JSON, so no stored body can equal one."""

from __future__ import annotations

from typing import Final

# A remembered 404 (the `cache` step's `not_found_ttl_s`).
NOT_FOUND_MARKER: Final = b"\x00turnstile:404"
# Written by `cache-invalidate` instead of deleting the key: for `tombstone_ttl_s` it reads as a
# miss that is not stored, and it makes the `cache` step's add-if-absent fill of a read that
# started before the write fail, so that read's old answer is never cached.
TOMBSTONE: Final = b"\x00turnstile:invalidated"
