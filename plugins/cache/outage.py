"""What the cache steps share about a failing backend: what it raises, and one warning log."""

from __future__ import annotations

import logging
from typing import Final

from app import CacheUnavailable, OutageLog

log = logging.getLogger("turnstile.cache")

# What a backend raises when it cannot answer now; the Redis client maps its own timeouts to
# CacheUnavailable, TimeoutError covers any other backend that lets one through.
BACKEND_ERRORS: Final = (CacheUnavailable, TimeoutError)

# One per process: a Redis outage is one event, however many routes notice it.
outage_log = OutageLog(log, "cache backend")
