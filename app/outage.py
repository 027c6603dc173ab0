"""A failing dependency told once per outage, however many requests notice it, and its end once."""

from __future__ import annotations

import logging
import time
from typing import Final, final

QUIET_S: Final = 30.0


@final
class OutageLog:
    """Logs `subject`'s failure as one WARNING per outage, and its end as one INFO.

    `warning` starts an outage (later calls are DEBUG lines); `ok` ends it. A caller that
    never calls `ok` sees a new outage begin after `interval_s` without any failure.
    """

    def __init__(self, logger: logging.Logger, subject: str, interval_s: float = QUIET_S) -> None:
        self.logger = logger
        self.subject = subject
        self.interval_s = interval_s
        self._since: float | None = None  # when the current outage began
        self._last = 0.0  # the last failure seen

    @property
    def in_outage(self) -> bool:
        return self._since is not None and time.monotonic() - self._last < self.interval_s

    def warning(self, what: str, exc: BaseException | None = None) -> None:
        cause = _cause(exc)
        now = time.monotonic()
        if self.in_outage:
            self.logger.debug("%s unavailable while %s: %s", self.subject, what, cause)
        else:
            self._since = now
            self.logger.warning("%s unavailable while %s: %s", self.subject, what, cause)
        self._last = now

    def ok(self) -> None:
        """The dependency answered: an outage in course is over."""
        if self._since is not None:
            since, self._since = self._since, None
            self.logger.info("%s available again after %.1f s", self.subject, time.monotonic() - since)


def _cause(exc: BaseException | None) -> str:
    if exc is None:
        return "no error detail"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
