"""Background work that belongs to no request: what it does makes no trace.

The health checks, the rollback watch, the mirror's keep-alive, the idle data-service probe and
the outbox's depth reads run every second or so in every process. Each Redis command or call they
make was a root span, so a trace of its own: two a second per idle pod, noise in the trace
backend that grew with the replicas. Inside `untraced()` the current span is a valid one that is
not sampled, so the default, parent-based samplers make none of their spans (a sampler that
ignores the parent, `always_on`, still does, as it samples everything). Tracing off: nothing to
do, and the cost is a context attach per loop.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Run the block under a parent that is not sampled (see the module's docstring)."""
    parent = SpanContext(
        trace_id=random.getrandbits(128) or 1,  # an id, not a secret; never exported
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),  # not sampled
    )
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def untraced_outside_a_trace() -> Iterator[None]:
    """`untraced()` unless the block already runs in a trace (a request that is traced): the
    readiness checks of an untraced probe made a root span per Redis command."""
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with untraced():
        yield
