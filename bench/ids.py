"""Seeded users for the uncached reads: each run reads ids no read has touched since their
cache entries were last deleted, so every request misses."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from typing import Final

from bench import wrk

# No server here reads more uncached users a second than this: runs are sized by it.
MAX_UNCACHED_RPS: Final = 8_000
_BATCH: Final = 1_000


class FreshIds:
    """Ids 1..`last` handed out upwards. When a run could go past `last`, `forget(upto)` deletes
    the cache entries of ids 1..upto (Turnstile's and the baseline's) and the ids start over:
    a few seeded users serve any number of runs, and the data service stays the size the
    other scenarios are measured at (its email lookups scan the table)."""

    def __init__(self, last: int, forget: Callable[[int], None]) -> None:
        self.last = last
        self.next = 1
        self._forget = forget

    def take(self, seconds: float, share: float = 1.0) -> int:
        """The first id for a run of `seconds` in which `share` of the requests are uncached reads."""
        if self.next + seconds * share * MAX_UNCACHED_RPS > self.last:
            self._forget(self.next - 1)
            self.next = 1
        return self.next

    def used(self, result: wrk.Result) -> wrk.Result:
        """Move past the ids a run read; refuse a run that went past the range."""
        self.next = max(self.next, max(result.last_ids, default=0) + 1)
        if self.next - 1 > self.last:
            msg = "the uncached reads ran out of seeded ids: raise the seed count"
            raise RuntimeError(msg)
        return result


def forget_cache_entries(redis_url: str, prefixes: Sequence[str], upto: int) -> None:
    """Delete `<prefix><id>` for ids 1..upto and every prefix (UNLINK, a thousand keys a command)."""
    commands = [
        "UNLINK " + " ".join(f"{prefix}{i}" for i in range(start, min(start + _BATCH, upto + 1)))
        for prefix in prefixes
        for start in range(1, upto + 1, _BATCH)
    ]
    if commands:
        subprocess.run(["redis-cli", "-u", redis_url], input="\n".join(commands) + "\n", text=True,
                       check=True, capture_output=True, timeout=120)
