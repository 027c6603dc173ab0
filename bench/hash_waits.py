"""How long the login storm's password hashes waited for a hashing thread, read from
Turnstile's own histogram (`turnstile_password_hash_wait_seconds`) before and after the storm.

Contract §12 bounds that wait: past it a login is answered 503 with Retry-After. What a login
takes in all (the wait, then a hash at the lowest CPU priority on a busy core) is the storm's
`max ms`; this is the part the bound promises.
"""

from __future__ import annotations

import math
import urllib.request
from typing import Any, Final

import attrs
from prometheus_client.parser import text_string_to_metric_families

from plugins.auth.hashing_gate import LATE_TIMEOUT_S, MAX_QUEUE_WAIT_S

BUCKETS: Final = "turnstile_password_hash_wait_seconds_bucket"
# The bound, and how late a busy loop may run its timeout (a bucket edge of the histogram).
BOUND_S: Final = MAX_QUEUE_WAIT_S + LATE_TIMEOUT_S
BOUND_TEXT: Final = f"{MAX_QUEUE_WAIT_S:g} s, +{LATE_TIMEOUT_S:g} s for a busy loop to run the timeout"

Buckets = dict[float, float]  # a bucket's upper edge (seconds, +inf last) -> waits at most that long


def scrape(url: str) -> Buckets:
    """Turnstile's hash-wait buckets now (all zero before its first hash)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {float(sample.labels["le"]): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == BUCKETS}


@attrs.frozen
class HashWaits:
    """The waits between two scrapes: how many, how many within the bound, the longest's bucket."""

    waits: int
    within_bound: int
    longest_at_most_s: float  # the smallest bucket edge holding every wait (inf: past the last)

    @property
    def over_bound(self) -> int:
        return self.waits - self.within_bound

    def as_json(self) -> dict[str, Any]:
        longest = None if math.isinf(self.longest_at_most_s) else self.longest_at_most_s
        return {"waits": self.waits, "within_bound": self.within_bound, "bound_s": BOUND_S,
                "longest_at_most_s": longest}


def between(before: Buckets, after: Buckets) -> HashWaits:
    counts = {edge: after[edge] - before.get(edge, 0.0) for edge in sorted(after)}
    waits = counts.get(math.inf, 0.0)
    if BOUND_S not in counts:
        msg = f"Turnstile's {BUCKETS} has no bucket at {BOUND_S:g} s: {sorted(counts)}"
        raise ValueError(msg)
    longest = min((edge for edge, n in counts.items() if n >= waits), default=math.inf)
    return HashWaits(waits=round(waits), within_bound=round(counts[BOUND_S]), longest_at_most_s=longest)
