"""Contract §15 end to end: one request is one trace, from the server span through each
pipeline step to the data service (which receives the `traceparent`) and Redis; an event
carries its producer span's context in its headers, and the subscription that consumes it
continues the same trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from app.pipeline.registry import load_checked
from app.plugins import make_plugin_manager
from tests.integration.amqp_capture import capture, eventually, has_consumer, next_message
from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.tracing.conftest import ServiceFactory, TracedService
from tests.tracing.otlp_receiver import ReceivedSpan

pytestmark = pytest.mark.timeout(120)

PASSWORD = "correct-horse-1"


def step_lines(service: TracedService, pipeline: str) -> dict[str, int]:
    """Each step type of `pipeline` and the line of the pipelines file it is written on."""
    _, pipelines = load_checked(service.pipelines_file, make_plugin_manager())
    (found,) = [p for p in pipelines.pipelines if p.name == pipeline]
    return {step.type.name: step.line for step in found.steps}


def by_request_id(spans: list[ReceivedSpan], request_id: str) -> ReceivedSpan | None:
    return next(
        (s for s in spans if s.kind == "server" and s.attributes.get("turnstile.request_id") == request_id), None
    )


def ancestors(span: ReceivedSpan, trace: list[ReceivedSpan]) -> Iterator[ReceivedSpan]:
    index = {s.span_id: s for s in trace}
    parent = index.get(span.parent_span_id)
    while parent is not None:
        yield parent
        parent = index.get(parent.parent_span_id)


def only(trace: list[ReceivedSpan], name: str) -> ReceivedSpan:
    matches = [s for s in trace if s.name == name]
    assert len(matches) == 1, (name, sorted(s.name for s in trace))
    return matches[0]


def is_redis(span: ReceivedSpan) -> bool:
    return span.kind == "client" and span.attributes.get("db.system.name") == "redis"


def parent_of(header: str) -> tuple[str, str]:
    """The trace id and parent span id a W3C `traceparent` names; it must say "sampled"."""
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00"
    assert int(flags, 16) & 1, header
    return trace_id, span_id


async def call(
    http: aiohttp.ClientSession, method: str, url: str, request_id: str, token: str | None = None, **kw: Any
) -> tuple[int, dict[str, str], Any]:
    headers = {"X-Request-ID": request_id}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, headers=headers, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def user_and_admin_token(http: aiohttp.ClientSession, email: str, unique: str) -> tuple[dict[str, Any], str]:
    """A newly registered user, and an admin's access token."""
    status, _, user = await call(
        http, "POST", "/api/v1/auth/register", f"reg-{unique}", json={"email": email, "password": PASSWORD}
    )
    assert status == 201, user
    credentials = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    status, _, tokens = await call(http, "POST", "/api/v1/auth/login", f"login-{unique}", json=credentials)
    assert status == 200, tokens
    token: str = tokens["access_token"]
    return user, token


async def ready_service(traced_service: ServiceFactory, amqp_url: str) -> TracedService:
    service = await traced_service()

    async def consuming() -> bool:
        return await has_consumer(amqp_url, service.queue)

    await eventually(consuming, 30, "the subscription consuming")
    return service


async def test_a_cache_miss_is_one_trace_from_the_server_span_to_the_data_service_and_redis(
    traced_service: ServiceFactory, amqp_url: str, unique: str
) -> None:
    service = await ready_service(traced_service, amqp_url)
    lines = step_lines(service, "get_user")
    file = service.pipelines_file.name
    async with aiohttp.ClientSession(base_url=service.process.base_url) as http:
        user, admin_token = await user_and_admin_token(http, "ann@example.com", unique)
        request_id = f"get-{unique}"
        status, headers, _ = await call(http, "GET", f"/api/v1/users/{user['id']}", request_id, admin_token)
    assert status == 200
    assert headers["X-Cache"] == "MISS"
    assert "Server-Timing" not in headers  # SERVER_TIMING is not set: tracing alone adds no header
    step_names = {
        "auth": f"step auth ({file}:{lines['auth']})",
        "cache": f"step cache ({file}:{lines['cache']})",
        "fetch": f"step data-fetch ({file}:{lines['data-fetch']})",
    }

    def complete(spans: list[ReceivedSpan]) -> bool:
        server = by_request_id(spans, request_id)
        if server is None:
            return False
        trace = [s for s in spans if s.trace_id == server.trace_id]
        names = {s.name for s in trace}
        return set(step_names.values()) <= names and any(s.kind == "client" and not is_redis(s) for s in trace)

    await service.receiver.wait_for(f"the spans of {request_id}", complete)
    server = by_request_id(service.receiver.spans, request_id)
    assert server is not None
    trace = service.receiver.trace(server.trace_id)

    assert server.name == "GET /api/v1/users/{id}"  # the route template, not the path
    assert server.attributes["http.route"] == "/api/v1/users/{id}"
    assert server.parent_span_id == ""
    assert server.service == "turnstile"
    assert not [s for s in trace if str(user["id"]) in s.name]
    auth, cache, fetch = (only(trace, step_names[k]) for k in ("auth", "cache", "fetch"))
    rules = only(trace, "step rules")
    # Outermost first: each step's span is the parent of the next one's.
    assert auth.parent_span_id == server.span_id
    assert rules.parent_span_id == auth.span_id
    assert cache.parent_span_id == rules.span_id
    assert fetch.parent_span_id == cache.span_id

    (client,) = [s for s in trace if s.kind == "client" and not is_redis(s)]
    assert client.parent_span_id == fetch.span_id
    assert "email" not in str(client.attributes)
    assert (client.attributes["http.request.method"], client.attributes["http.response.status_code"]) == ("GET", 200)
    assert client.attributes["server.address"] == "127.0.0.1"
    (reached,) = [r for r in service.proxy.received if r.path == f"/api/v1/users/{user['id']}" and r.method == "GET"]
    assert parent_of(reached.headers["traceparent"]) == (server.trace_id, client.span_id)
    assert reached.headers["X-Request-ID"] == request_id

    redis_spans = [s for s in trace if is_redis(s)]
    assert redis_spans, sorted(s.name for s in trace)
    under_cache = [s for s in redis_spans if cache in ancestors(s, trace)]
    # The read that claims the fetch and the fill that gives the claim up: one script each.
    assert [s.name for s in under_cache].count("EVALSHA") >= 2, [s.name for s in under_cache]
    assert all(server in ancestors(s, trace) for s in redis_spans)
    assert not any("ann@example.com" in str(s.attributes) for s in redis_spans)

    # Read twice more: by the third read every key it needs is in the local mirror, and a
    # mirror hit never leaves the process, so it makes no Redis span.
    async with aiohttp.ClientSession(base_url=service.process.base_url) as http:
        for attempt in ("again", "mirrored"):
            status, headers, _ = await call(
                http, "GET", f"/api/v1/users/{user['id']}", f"{attempt}-{unique}", admin_token
            )
            assert (status, headers["X-Cache"]) == (200, "HIT")
    await service.receiver.wait_for(
        "the third read's server span", lambda spans: by_request_id(spans, f"mirrored-{unique}") is not None
    )
    mirrored = by_request_id(service.receiver.spans, f"mirrored-{unique}")
    assert mirrored is not None
    third = service.receiver.trace(mirrored.trace_id)
    assert step_names["cache"] in {s.name for s in third}
    assert [s.name for s in third if is_redis(s)] == []


async def test_an_event_carries_the_trace_to_the_subscription_that_consumes_it(
    traced_service: ServiceFactory, amqp_url: str, unique: str
) -> None:
    service = await ready_service(traced_service, amqp_url)
    async with aiohttp.ClientSession(base_url=service.process.base_url) as http:
        user, admin_token = await user_and_admin_token(http, "bob@example.com", unique)
        request_id = f"patch-{unique}"
        async with capture(amqp_url, service.exchange, "user.updated") as received:
            status, _, body = await call(
                http, "PATCH", f"/api/v1/users/{user['id']}", request_id, admin_token,
                # Deactivating: the subscriptions revoke the user's tokens in Redis (the cache
                # tombstone is not written again for this instance's own event).
                json={"full_name": "Bob Traced", "is_active": False},
            )
            assert status == 200, body
            message = await next_message(received)
    headers = message.header.properties.headers or {}
    assert headers["x-request-id"] == request_id

    def complete(spans: list[ReceivedSpan]) -> bool:
        server = by_request_id(spans, request_id)
        return server is not None and any(
            s.kind == "consumer" and s.trace_id == server.trace_id for s in spans
        )

    await service.receiver.wait_for(f"the spans of {request_id} and of its event's consumer", complete)
    server = by_request_id(service.receiver.spans, request_id)
    assert server is not None
    assert server.name == "PATCH /api/v1/users/{id}"
    trace = service.receiver.trace(server.trace_id)
    producer = only(trace, "publish user.updated")
    assert producer.kind == "producer"
    assert server in ancestors(producer, trace)
    assert producer.attributes["messaging.message.id"] == message.header.properties.message_id
    assert producer.attributes["messaging.destination.name"] == service.exchange
    assert isinstance(headers["traceparent"], str)
    assert parent_of(headers["traceparent"]) == (server.trace_id, producer.span_id)

    # Every subscription that consumed it (the shared one, and the one each instance has)
    # continues the event's trace.
    consumers = [s for s in trace if s.name == "process user.updated"]
    assert consumers
    assert all(c.kind == "consumer" and c.parent_span_id == producer.span_id for c in consumers)
    assert all(c.attributes["turnstile.request_id"] == request_id for c in consumers)
    [consumer] = [c for c in consumers if c.attributes["messaging.destination.subscription.name"] == service.queue]
    # The subscription's steps (here the revocation) call Redis inside the consumer span.
    assert any(is_redis(s) and s.parent_span_id == consumer.span_id for s in trace), sorted(s.name for s in trace)


async def test_an_idle_service_exports_no_traces_of_its_background_work(traced_service: ServiceFactory) -> None:
    # Health checks, the rollback watch, the mirror's keep-alive, the data-service probe and the
    # outbox's depth run every second or so: each command was a root span, a trace of its own.
    service = await traced_service()
    await asyncio.sleep(1)  # what the start-up did (the admin it creates, say) is exported by now
    seen = len(service.receiver.spans)
    await asyncio.sleep(7)  # several rounds of each, the probe's included (every 5 s when idle)
    roots = [span.name for span in service.receiver.spans[seen:] if span.parent_span_id == ""]
    assert roots == []
