"""A real OTLP/HTTP trace receiver for the tests: an aiohttp app taking ``POST /v1/traces``
(protobuf, plain or gzip), decoded with opentelemetry-proto as a collector would, each span
kept as a `ReceivedSpan`. It answers what the OTLP/HTTP spec says a collector answers."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PROTOBUF = "application/x-protobuf"
KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}


@attrs.frozen
class ReceivedSpan:
    """One exported span, ids as lowercase hex (as in a `traceparent`)."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    service: str
    status_code: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


class OtlpReceiver:
    """Collects every span exported to it; `app` is served by the test."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.answering = True  # False: take requests and never answer, as a hung collector
        self.app = web.Application()
        self.app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        if not self.answering:
            await asyncio.Event().wait()  # until the test's server closes
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if request.content_type != PROTOBUF:
            return web.Response(status=415)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(
                    ReceivedSpan(
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        service=str(resource.get("service.name", "")),
                        status_code=span.status.code,
                    )
                    for span in scope_spans.spans
                )
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.trace_id == trace_id]

    async def wait_for(
        self, what: str, found: Callable[[list[ReceivedSpan]], bool], within_s: float = 20.0
    ) -> None:
        """Poll until `found(self.spans)`; fail the test with `what` after `within_s` seconds."""
        deadline = time.monotonic() + within_s
        while not found(self.spans):
            if time.monotonic() > deadline:
                names = sorted({span.name for span in self.spans})
                pytest.fail(f"not within {within_s} s: {what}; spans received: {names}")
            await asyncio.sleep(0.1)
