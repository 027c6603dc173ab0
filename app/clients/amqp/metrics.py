"""The event metrics (contract §12): published, outboxed, consumed, and the publisher's link."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_PUBLISHED = Counter(
    "turnstile_events_published_total",
    "Domain events by what happened to them: confirmed, outboxed, unroutable, nacked, logged.",
    ["outcome"],
)
OUTBOX_DEPTH = Gauge("turnstile_outbox_depth", "Events waiting in the durable outbox for the broker.")
PUBLISHER_CONNECTED = Gauge("turnstile_publisher_connected", "1 while the event publisher has a broker channel.")
EVENTS_CONSUMED = Counter(
    "turnstile_events_consumed_total",
    "Consumed events by subscription (queue) and outcome: acked, retried, waited, dead_lettered.",
    ["subscription", "outcome"],
)
