"""OpenTelemetry traces (contract §15), off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

This module owns every OpenTelemetry import. When tracing is on, a request is one trace:

- the server span (made from the aiohttp server instrumentation's pieces, its attributes only
  when the span records: `_server_middleware`), named after the route template
  (``GET /api/v1/users/{id}``, never the raw path), with the request id as ``turnstile.request_id``;
- a span per pipeline step, ``step cache (pipelines.toml:95)`` (app/pipeline/build.py);
- client spans for the data service (aiohttp client instrumentation on every `ClientSession`,
  which also sends `traceparent`; URLs are recorded without their query, which may hold an
  email) and for each Redis command that leaves the process (coredis's own instrumentation:
  command names only, never arguments; the local mirror's hits make no span);
- a producer span per published event, whose context travels in the message's `traceparent`
  header; a subscription's consumer span continues the trace it received.

The standard variables are honoured by the SDK itself: `OTEL_SERVICE_NAME` (default here:
``turnstile``), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_PROPAGATORS`,
`OTEL_EXPORTER_OTLP_*` (headers, timeout, compression, certificates), `OTEL_BSP_*`,
`OTEL_SDK_DISABLED`, `OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS` (default here: the probes and
/metrics), `OTEL_SEMCONV_STABILITY_OPT_IN` (default here: `http`). Spans go out over OTLP/HTTP
(protobuf) from the SDK's batch processor thread.

Zero cost when off: the decision is made once, when the app is built. Off, nothing is
installed (no provider, no instrumentation, no exporter thread), the SDK and the exporter are
not even imported, and the step wrappers are the plain ones, so no span object is made per
request. The provider and the instrumentation are per process (they are global in the
OpenTelemetry API); each app built afterwards gets its own middleware and wrappers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final

import attrs
from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from yarl import URL

from app.clients.amqp import Publisher, PublishOutcome
from app.clients.amqp.publishing import DEFAULT_CONFIRM_DEADLINE_S, DEFAULT_FLUSH_DEADLINE_S
from app.errors import ProblemError
from app.keys import pipelines_key, publisher_key, request_id_key, settings_key
from app.logs import use_span_ids
from app.models.events import Event
from app.pipeline.types import Handler, MessageHandler, Step, SubscriptionConfig
from app.server_timing import setup_server_timing
from app.settings import SettingsError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("turnstile.tracing")

DEFAULT_SERVICE_NAME: Final = "turnstile"
REQUEST_ID_ATTRIBUTE: Final = "turnstile.request_id"
# How long shutdown waits for the collector to take the last spans.
END_DEADLINE_S: Final = 5.0
_ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROTOCOL_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
_SHIPPED_PROTOCOL: Final = "http/protobuf"
_DEFAULT_VARIABLES: Final = {
    "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS": "^/healthz$,^/readyz$,^/metrics$",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
}


@final
@attrs.frozen
class Tracing:
    """What an app traces with: its tracer, and the pipelines file's name for step span names."""

    tracer: Tracer
    file_name: str


tracing_key = web.AppKey("tracing", Tracing)


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set, and neither
    `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def setup_tracing(app: web.Application) -> None:
    """Read the environment once: Server-Timing (app/server_timing.py), and traces when asked.

    Call after the clients exist and before the routes are built: it wraps the publisher,
    and the step wrappers read what it decided.

    Raises:
        SettingsError: an `OTEL_*` variable asks for what this service does not ship.
    """
    setup_server_timing(app)
    if not tracing_requested():
        return
    provider = _process_provider()
    tracer = provider.get_tracer("turnstile")
    app[tracing_key] = Tracing(tracer, app[pipelines_key].path.name)
    # Outermost, so the server span covers every other middleware; the request id is known
    # only once the request-id middleware ran, so it is put on the span on the way out.
    app.middlewares.insert(0, _request_id_attribute)
    app.middlewares.insert(0, _server_middleware(provider))
    app[publisher_key] = TracedPublisher(app[publisher_key], tracer, app[settings_key].events_exchange)
    app.on_cleanup.append(_end_at_cleanup)  # after every cleanup context: their spans go too
    use_span_ids(_current_span_ids)  # JSON log lines name their trace and span


def _current_span_ids() -> dict[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return {"trace_id": trace.format_trace_id(context.trace_id), "span_id": trace.format_span_id(context.span_id)}


def app_tracer(app: web.Application) -> Tracing | None:
    """How `app` traces, or None when tracing is off (or `setup_tracing` never saw it)."""
    return app.get(tracing_key)


async def end_tracing(deadline_s: float = END_DEADLINE_S) -> bool:
    """Send the spans still queued, then stop exporting: the process is ending.

    Waits at most `deadline_s` for the collector (the SDK's own flush has no bound, and its
    shutdown waits 30 s); False when that was not enough, and what is left is dropped. Spans
    made afterwards are dropped too. Without tracing, a no-op.
    """
    if _process_provider.cache_info().currsize == 0:  # tracing was never set up here
        return True
    provider = _process_provider()
    done = threading.Event()

    def shut_down() -> None:
        provider.shutdown()
        done.set()

    # A daemon thread, so a collector that does not answer cannot hold the process's exit.
    threading.Thread(target=shut_down, name="turnstile-end-tracing", daemon=True).start()
    return await asyncio.to_thread(done.wait, deadline_s)


# --- spans of the pipeline ------------------------------------------------------------------


def step_span_name(step_type: str, file_name: str, line: int) -> str:
    """``step cache (pipelines.toml:95)``: the step's type and where it is written."""
    return f"step {step_type} ({file_name}:{line})"


def traced_step(step: Step, tracer: Tracer, name: str) -> Step:
    """`step` inside a span; a client error (a 4xx problem) is recorded, not marked as a failure.

    A request the sampler left out (its server span does not record) gets no step spans at
    all: they would record nothing either, and making them costs as much as a cached read.
    """

    async def run(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not trace.get_current_span().is_recording():
            return await step(request, handler)
        with tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as span:
            try:
                return await step(request, handler)
            except (ProblemError, web.HTTPException) as exc:
                span.set_attribute("turnstile.problem.status", exc.status)
                if exc.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    return run


def traced_subscription(
    app: web.Application, subscription: SubscriptionConfig, handler: MessageHandler
) -> MessageHandler:
    """A subscription's handler as a consumer span that continues the trace the event carries."""
    tracing = app_tracer(app)
    if tracing is None:
        return handler
    tracer = tracing.tracer

    async def run(event: Event) -> None:
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.subscription.name": subscription.queue,
            "messaging.message.id": event.id,
            "messaging.rabbitmq.destination.routing_key": event.type,
            "turnstile.subscription": subscription.name,
            REQUEST_ID_ATTRIBUTE: event.request_id,
        }
        parent = propagate.extract(event.headers)
        with tracer.start_as_current_span(
            f"process {event.type}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ):
            await handler(event)

    return run


@final
class TracedPublisher:
    """A `Publisher` that makes a producer span per event and sends its context in the
    event's headers (`traceparent`), so consumers continue the trace."""

    def __init__(self, inner: Publisher, tracer: Tracer, exchange: str) -> None:
        self._inner = inner
        self._tracer = tracer
        self._exchange = exchange

    @property
    def state(self) -> str:
        return self._inner.state

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self, flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S) -> None:
        await self._inner.stop(flush_deadline_s)

    async def ready(self) -> bool:
        return await self._inner.ready()

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": self._exchange,
            "messaging.rabbitmq.destination.routing_key": event.type,
            "messaging.message.id": event.id,
            REQUEST_ID_ATTRIBUTE: event.request_id,
        }
        with self._tracer.start_as_current_span(
            f"publish {event.type}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            outcome = await self._inner.publish(
                attrs.evolve(event, headers={**event.headers, **carrier}), confirm_deadline_s=confirm_deadline_s
            )
            span.set_attribute("turnstile.publish.outcome", outcome)
            return outcome


# --- the process-wide set-up (only when tracing is on) ---------------------------------------


@functools.cache
def _process_provider() -> TracerProvider:
    """The SDK provider with its OTLP exporter, made global, and the client instrumentations.

    Once per process: OpenTelemetry's provider and instrumentations are global by design.
    """
    _check_protocol()
    # This service's defaults where the variables are unset, read by the instrumentations below:
    # the kubelet's probes and Prometheus's scrapes make no trace (some twenty a minute that say
    # nothing, and a drain's 503s read as errors), and HTTP spans use the stable semantic
    # conventions (http.request.method, url.path, ...: the older names are deprecated, and
    # coredis's Redis spans already use the stable ones).
    for name, default in _DEFAULT_VARIABLES.items():
        os.environ.setdefault(name, default)
    # Imported here, not at the top: the exporter pulls in protobuf and requests (about a
    # second of start-up) that a service without tracing must not pay.
    import coredis  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    # Resource.create() lets explicit attributes win over the environment; so the default
    # name is given only when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one.
    named = SERVICE_NAME in OTELResourceDetector().detect().attributes
    resource = Resource.create({} if named else {SERVICE_NAME: DEFAULT_SERVICE_NAME})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider, url_filter=_without_query)
    # The server instrumentor initialises its module (tracer, excluded URLs, semconv mode) and
    # replaces `web.Application` with a subclass; the class is put back at once, because each
    # app gets the middleware from `setup_tracing` (an app built before would miss it, and
    # every other aiohttp app of the process, the embedded data service's too, would get it).
    server = AioHttpServerInstrumentor()
    server.instrument(tracer_provider=provider)
    server.uninstrument()
    coredis.Config.otel_enabled = True
    return provider


def _check_protocol() -> None:
    problems = [
        f"{name}={value!r}: this service ships only the {_SHIPPED_PROTOCOL} OTLP exporter"
        for name in _PROTOCOL_VARIABLES
        if (value := os.environ.get(name, "").strip()) and value != _SHIPPED_PROTOCOL
    ]
    if problems:
        raise SettingsError(problems)


def _without_query(url: URL) -> str:
    # Data-service calls carry `?email=` lookups: personal data stays out of the spans.
    return str(url.with_query(None).with_fragment(None))


def _server_middleware(provider: TracerProvider) -> Middleware:
    """The server span, made with the aiohttp server instrumentation's own pieces (span name,
    request, header and status attributes, excluded URLs, semantic-convention mode), but with
    its attributes collected only when the span records.

    The instrumentation's `create_aiohttp_middleware` collects them for every request, sampled
    or not, because they also feed its OpenTelemetry metrics, which this service does not
    export (its metrics are Prometheus'): that was ~20% of an unsampled request's CPU
    (docs/performance.md). The price: a sampler does not see the request's attributes, which
    the standard samplers (`OTEL_TRACES_SAMPLER`) never look at.
    """
    from opentelemetry.instrumentation import aiohttp_server as instrumented  # noqa: PLC0415
    from opentelemetry.instrumentation.aiohttp_server.version import __version__  # noqa: PLC0415
    from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled  # noqa: PLC0415

    tracer = provider.get_tracer(instrumented.__name__, __version__)

    @web.middleware
    async def server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Both set by the instrumentor's `instrument()` (`_process_provider`).
        excluded, mode = instrumented._excluded_urls, instrumented._sem_conv_opt_in_mode
        if not is_http_instrumentation_enabled() or (excluded is not None and excluded.url_disabled(request.path)):
            return await handler(request)
        with tracer.start_as_current_span(
            instrumented.get_default_span_name(request),
            context=propagate.extract(request, getter=instrumented.getter),
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            recording = span.is_recording()
            if recording:
                span.set_attributes(_queryless_attributes(instrumented.collect_request_attributes(request, mode)))
                span.set_attributes(instrumented.collect_request_headers_attributes(request))
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                instrumented.set_status_code(span, exc.status_code, None, mode)
                if exc.status_code >= 500:
                    span.record_exception(exc)
                raise
            except Exception as exc:
                instrumented.set_status_code(span, type(exc).__qualname__, None, mode)  # type: ignore[arg-type]
                span.record_exception(exc)
                raise
            instrumented.set_status_code(span, response.status, None, mode)
            if recording:
                # It reads `.headers`, which every StreamResponse has.
                span.set_attributes(instrumented.collect_response_headers_attributes(response))  # type: ignore[arg-type]
            return response

    return server_span


# The request's URL attributes, in either semantic-convention mode: a query string may carry
# what a client should not have put there (a token, an email), and spans leave the service.
_URL_ATTRIBUTES: Final = ("http.target", "http.url", "url.full")


def _queryless_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    # Without its query (it may hold an email), and without an empty route: a path that matched
    # none has no `http.route` (the conventions say to leave it out), not "".
    cleaned = {key: value for key, value in attributes.items()
               if key != "url.query" and not (key == "http.route" and value == "")}
    for key in _URL_ATTRIBUTES:
        value = cleaned.get(key)
        if isinstance(value, str):
            cleaned[key] = value.partition("?")[0]
    return cleaned


@web.middleware
async def _request_id_attribute(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    finally:
        request_id = request.get(request_id_key)
        if request_id is not None:
            trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


async def _end_at_cleanup(_app: web.Application) -> None:
    if not await end_tracing():
        log.warning("the trace collector did not take the last spans within %.0f s; they are dropped", END_DEADLINE_S)
