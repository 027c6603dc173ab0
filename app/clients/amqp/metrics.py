"""The event metrics (contract §12): published, outboxed, consumed, and the broker links."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_PUBLISHED = Counter(
    "turnstile_events_published_total",
    "Domain events by what happened to them: confirmed, outboxed, unroutable, nacked, logged.",
    ["outcome"],
)
# Under --workers N (multiprocess_mode): the outbox is shared, so each worker reads the same depth
# plus its own spill file; the publisher counts as connected only while every worker's is.
OUTBOX_DEPTH = Gauge("turnstile_outbox_depth", "Events waiting in the durable outbox for the broker.",
                     multiprocess_mode="livemax")
PUBLISHER_CONNECTED = Gauge("turnstile_publisher_connected", "1 while the event publisher has a broker channel.",
                            multiprocess_mode="livemin")
EVENTS_CONSUMED = Counter(
    "turnstile_events_consumed_total",
    "Consumed events by subscription (queue) and outcome: acked, retried, waited, dead_lettered.",
    ["subscription", "outcome"],
)
# A subscription cut off from the broker hears of no change made elsewhere: its link shows it.
CONSUMER_CONNECTED = Gauge(
    "turnstile_consumer_connected", "1 while the subscription's consumer has a broker channel.", ["subscription"],
    multiprocess_mode="livemin",
)
