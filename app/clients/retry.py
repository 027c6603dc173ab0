"""Which upstream calls may be retried, and how long to wait before each retry (or reconnect)."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

# RFC 9110 §9.2.2: repeating these has the same effect as sending them once. POST and PATCH
# are never retried: a lost answer may hide a write that happened.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# Answers that say "not now" rather than "no": a gateway or the upstream itself is unavailable.
RETRYABLE_STATUSES = frozenset({502, 503, 504})


def is_idempotent(method: str) -> bool:
    return method.upper() in IDEMPOTENT_METHODS


def backoff_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,  # jitter, not security
) -> float:
    """The wait before retry number ``attempt`` (0 for the first): full jitter over a capped exponential.

    "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter") draws uniformly from
    ``[0, min(max_s, base_s * 2**attempt)]`` so that callers that failed together do not retry together.
    """
    ceiling = min(max_s, base_s * 2.0 ** min(max(0, attempt), 32))  # the exponent is bounded: no float overflow
    return rand() * ceiling


@attrs.define
class Backoff:
    """The waits of one retry loop: `next_s()` before each retry, `reset()` once it worked.

    Full jitter (see `backoff_s`) over ``base_s * 2**attempt``, capped at ``max_s``.
    """

    base_s: float
    max_s: float
    attempt: int = 0

    def next_s(self) -> float:
        delay = backoff_s(self.attempt, base_s=self.base_s, max_s=self.max_s)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
