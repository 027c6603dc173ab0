"""At shutdown the spans still queued are sent, after every client closed; a collector that
does not answer holds the exit a few seconds at most, not the SDK's unbounded flush."""

from __future__ import annotations

import aiohttp
import pytest

from app.tracing import END_DEADLINE_S
from tests.tracing.conftest import ServiceFactory
from tests.tracing.otlp_receiver import ReceivedSpan

pytestmark = pytest.mark.timeout(120)

DRAIN_S = 0.1  # TURNSTILE_DRAIN_SECONDS of the tests' service


def served(spans: list[ReceivedSpan], request_id: str) -> bool:
    return any(s.kind == "server" and s.attributes.get("turnstile.request_id") == request_id for s in spans)


async def test_the_last_spans_leave_at_shutdown(traced_service: ServiceFactory, unique: str) -> None:
    # No periodic export in this test's lifetime: only the shutdown sends them.
    service = await traced_service(OTEL_BSP_SCHEDULE_DELAY="600000")
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{service.process.base_url}/api/v1/auth/me", headers={"X-Request-ID": f"last-{unique}"})
        assert resp.status == 401  # a traced route (the probes make no spans)
    assert not served(service.receiver.spans, f"last-{unique}")

    await service.process.stop()

    assert served(service.receiver.spans, f"last-{unique}")


async def test_a_collector_that_does_not_answer_holds_the_exit_a_few_seconds_at_most(
    traced_service: ServiceFactory, unique: str
) -> None:
    # The exporter would wait a minute for each batch; the service does not.
    service = await traced_service(OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_EXPORTER_OTLP_TIMEOUT="60")
    service.receiver.answering = False
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{service.process.base_url}/api/v1/auth/me", headers={"X-Request-ID": f"hung-{unique}"})
        assert resp.status == 401

    took = await service.process.stop()

    assert took < DRAIN_S + END_DEADLINE_S + 5
