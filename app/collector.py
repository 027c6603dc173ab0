"""Python's cyclic garbage collector, set for a long-running server (docs/performance.md).

A full (generation 2) collection walks every object the collector tracks. After start-up a
server holds ~120,000 that live as long as the process (modules, the app, its pipelines,
OpenAPI document and clients). The uncached read keeps some of what it makes (cache and mirror
entries, pooled connections' buffers) long enough for them to reach generation 2,
so full collections came about once a second and took ~60 ms each: measured, the largest part
of a busy instance's p99 and a sixth of its CPU. Two settings:

- `freeze_long_lived`: after start-up, everything alive moves to the permanent generation
  (`gc.freeze()`), which the collector never walks again; a full collection then walks only what
  was made since (~2 ms). After a reload the old pipelines are garbage: the next freeze thaws,
  collects them and freezes what is alive again (one full collection, ~0.1 s of the loop, once
  per reload).
- `tune_thresholds`: generation 0 is collected every 10,000 net allocations instead of 700, so
  the young collections that catch a request's short-lived cycles run 14 times less often;
  what they find is the same, later.
"""

from __future__ import annotations

import gc
import logging
from typing import Final

log = logging.getLogger("turnstile.collector")

YOUNG_THRESHOLD: Final = 10_000  # CPython's default is 700


def tune_thresholds() -> None:
    """Collect generation 0 less often; the older generations' ratios stay CPython's."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_long_lived(why: str) -> int:
    """Collect what is garbage now, then freeze everything still alive. Returns how many
    objects are frozen."""
    gc.unfreeze()  # what a previous freeze kept may be garbage now (an old pipeline table)
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("garbage collector: %d objects frozen %s; full collections walk only newer ones", frozen, why)
    return frozen
