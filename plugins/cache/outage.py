"""What the cache steps share about a failing backend: a warning at most once per interval."""

from __future__ import annotations

import logging
import time
from typing import Final, final

from app.clients.cache import CacheUnavailable

log = logging.getLogger("turnstile.cache")

WARN_INTERVAL_S: Final = 30.0
# What a backend raises when it cannot answer now; the Redis client maps its own timeouts to
# CacheUnavailable, TimeoutError covers any other backend that lets one through.
BACKEND_ERRORS: Final = (CacheUnavailable, TimeoutError)


@final
class OutageLog:
    """Logs a backend failure as a warning at most once per `interval_s`, counting the rest."""

    def __init__(self, interval_s: float = WARN_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._next_at = 0.0
        self._silenced = 0

    def warning(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._silenced += 1
            return
        silenced, self._silenced = self._silenced, 0
        self._next_at = now + self.interval_s
        log.warning(
            "cache backend unavailable while %s: %s (%d similar warnings silenced; next in %.0f s at most)",
            what, exc, silenced, self.interval_s,
        )


# One per process: a Redis outage is one event, however many routes notice it.
outage_log = OutageLog()
