"""A step's span (app/tracing.py `traced_step`), on a provider of the test's own (never the
process-wide one): named as given, a child of the request's span, a client error noted but
not a failure, and no span at all for a request the sampler left out."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, StatusCode, use_span

from app.errors import NotFound, ServiceUnavailable
from app.pipeline.types import Handler, Step
from app.tracing import traced_step

NAME = "step cache (pipelines.toml:95)"


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exported: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider


async def answer(_request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def failing(exc: Exception) -> Step:
    async def step(request: web.Request, handler: Handler) -> web.StreamResponse:
        raise exc

    return step


async def passing(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await answer(request)


async def test_a_step_span_is_a_child_of_the_request_s(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")
    run = traced_step(passing, tracer, NAME)
    with tracer.start_as_current_span("GET /x") as server:
        response = await run(make_mocked_request("GET", "/x"), answer)
    assert response.status == 200
    (step, _) = exported.get_finished_spans()
    assert step.name == NAME
    assert step.parent is not None
    assert step.parent.span_id == server.get_span_context().span_id
    assert step.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    ("exc", "status", "failed"),
    [
        (NotFound("no such user"), 404, False),
        (ServiceUnavailable("down"), 503, True),
        (RuntimeError("bug"), None, True),
    ],
)
async def test_only_server_side_failures_mark_the_span(
    provider: TracerProvider, exported: InMemorySpanExporter, exc: Exception, status: int | None, failed: bool
) -> None:
    tracer = provider.get_tracer("test")
    run = traced_step(failing(exc), tracer, NAME)
    with tracer.start_as_current_span("GET /x"), pytest.raises(type(exc)):
        await run(make_mocked_request("GET", "/x"), answer)
    step = exported.get_finished_spans()[0]
    assert step.attributes is not None
    assert step.attributes.get("turnstile.problem.status") == status
    assert (step.status.status_code is StatusCode.ERROR) is failed


async def test_a_request_left_out_by_the_sampler_makes_no_step_span(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    run = traced_step(passing, provider.get_tracer("test"), NAME)
    unsampled = NonRecordingSpan(provider.get_tracer("test").start_span("GET /x").get_span_context())
    with use_span(unsampled):
        assert (await run(make_mocked_request("GET", "/x"), answer)).status == 200
    assert [s.name for s in exported.get_finished_spans()] == []
