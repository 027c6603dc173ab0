"""A failing dependency's warning, at most once per interval: an outage is one event, however
many requests notice it."""

from __future__ import annotations

import logging
import time
from typing import Final, final

WARN_INTERVAL_S: Final = 30.0


@final
class OutageLog:
    """Logs `subject`'s failure as a warning at most once per `interval_s`, counting the rest."""

    def __init__(self, logger: logging.Logger, subject: str, interval_s: float = WARN_INTERVAL_S) -> None:
        self.logger = logger
        self.subject = subject
        self.interval_s = interval_s
        self._next_at = 0.0
        self._silenced = 0

    def warning(self, what: str, exc: BaseException | None = None) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._silenced += 1
            return
        silenced, self._silenced = self._silenced, 0
        self._next_at = now + self.interval_s
        self.logger.warning(
            "%s unavailable while %s: %s (%d similar warnings silenced; next in %.0f s at most)",
            self.subject, what, exc or "-", silenced, self.interval_s,
        )
