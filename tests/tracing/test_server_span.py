"""The server span (contract §15), named and described as the aiohttp server instrumentation
does, made by app/tracing.py: the request's attributes are collected only for a span that
records, excluded URLs make none, a caller's trace is continued, and an unsampled request
exports nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.tracing.conftest import ServiceFactory
from tests.tracing.otlp_receiver import ReceivedSpan
from tests.tracing.test_traces import by_request_id

pytestmark = pytest.mark.timeout(120)

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def served(request_id: str) -> Callable[[list[ReceivedSpan]], bool]:
    def found(spans: list[ReceivedSpan]) -> bool:
        return by_request_id(spans, request_id) is not None

    return found


async def get(base_url: str, path: str, request_id: str, **headers: str) -> int:
    async with aiohttp.ClientSession(base_url=base_url) as http, http.get(
        path, headers={"X-Request-ID": request_id, **headers}
    ) as resp:
        return resp.status


async def test_a_sampled_request_s_server_span_describes_the_request_and_its_answer(
    traced_service: ServiceFactory, unique: str
) -> None:
    service = await traced_service()
    request_id = f"no-token-{unique}"

    # A query string may carry what a client should not have put there: it stays out of the span.
    assert await get(service.process.base_url, "/api/v1/users/987654321?access_token=secret-in-query",
                     request_id) == 401

    await service.receiver.wait_for(f"the server span of {request_id}", served(request_id))
    server = by_request_id(service.receiver.spans, request_id)
    assert server is not None
    assert server.name == "GET /api/v1/users/{id}"
    assert server.parent_span_id == ""
    # OpenTelemetry's stable HTTP semantic conventions (the older http.method, http.target, ...
    # are deprecated; coredis's Redis spans already used the stable ones).
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.route"] == "/api/v1/users/{id}"
    assert server.attributes["url.path"] == "/api/v1/users/987654321"
    assert not any("secret-in-query" in str(value) for value in server.attributes.values())
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["user_agent.original"].startswith("Python/")
    assert "http.method" not in server.attributes

    nowhere = f"nowhere-{unique}"
    assert await get(service.process.base_url, "/no/such/route", nowhere) == 404
    await service.receiver.wait_for(f"the server span of {nowhere}", served(nowhere))
    unmatched = by_request_id(service.receiver.spans, nowhere)
    assert unmatched is not None
    assert "http.route" not in unmatched.attributes  # left out, not "" (the conventions' word)
    assert server.status_code == 0  # unset: a 4xx is the client's error, not the server's


async def test_a_json_log_line_names_its_trace_and_span(
    traced_service: ServiceFactory, unique: str, tmp_path: Path
) -> None:
    # A log line found by its request id leads to its trace (the OpenTelemetry log data model's
    # field names); before, only the spans carried the request id.
    service = await traced_service(LOG_FORMAT="json")
    request_id = f"logged-{unique}"
    assert await get(service.process.base_url, "/api/v1/users/987654321", request_id) == 401
    await service.receiver.wait_for(f"the server span of {request_id}", served(request_id))
    server = by_request_id(service.receiver.spans, request_id)
    assert server is not None
    await service.process.stop()  # its last lines written
    lines = [json.loads(line) for line in (tmp_path / "service.log").read_text().splitlines() if line.startswith("{")]
    (access,) = [line for line in lines
                 if line.get("request_id") == request_id and line["logger"] == "turnstile.access"]
    assert (access["trace_id"], access["span_id"]) == (server.trace_id, server.span_id)
    assert all(len(line.get("trace_id", "")) in (0, 32) for line in lines)
    started = [line for line in lines if line["logger"] != "turnstile.access" and line.get("request_id") == "-"]
    assert started, lines  # lines outside any request exist, with no ids
    assert not any("trace_id" in line for line in started if "starting" in line["msg"] or "listening" in line["msg"])


async def test_a_caller_s_sampled_trace_is_continued(traced_service: ServiceFactory, unique: str) -> None:
    service = await traced_service()
    request_id = f"caller-{unique}"

    status = await get(service.process.base_url, "/api/v1/users/987654321", request_id,
                       traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")

    assert status == 401
    await service.receiver.wait_for(f"the server span of {request_id}", served(request_id))
    server = by_request_id(service.receiver.spans, request_id)
    assert server is not None
    assert (server.trace_id, server.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)


async def test_excluded_urls_make_no_span(traced_service: ServiceFactory, unique: str) -> None:
    service = await traced_service(OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS="healthz,metrics")
    base = service.process.base_url

    assert await get(base, "/healthz", f"probe-{unique}") == 200
    assert await get(base, "/readyz", f"ready-{unique}") == 200

    await service.receiver.wait_for("the /readyz span", served(f"ready-{unique}"))
    assert by_request_id(service.receiver.spans, f"probe-{unique}") is None


async def test_probes_and_scrapes_make_no_trace_by_default(traced_service: ServiceFactory, unique: str) -> None:
    # Some twenty traces a minute that said nothing, and a drain's 503s read as errors.
    service = await traced_service()
    base = service.process.base_url
    await asyncio.sleep(0.5)  # the spans of the start-up (the admin's creation among them) are in

    def root_llen() -> int:
        return sum(1 for s in service.receiver.spans if s.name == "LLEN" and s.parent_span_id == "")

    before = root_llen()
    for path in ("/healthz", "/readyz", "/metrics", "/readyz", "/readyz"):
        assert await get(base, path, f"probe-{unique}") == 200
    assert await get(base, "/api/v1/users/987654321", f"api-{unique}") == 401
    await service.receiver.wait_for("the API call's span", served(f"api-{unique}"))
    assert by_request_id(service.receiver.spans, f"probe-{unique}") is None
    # nor do the readiness checks' Redis commands (the outbox's depth), which were a root span each
    assert root_llen() == before


async def test_an_unsampled_request_is_answered_and_exports_nothing(
    traced_service: ServiceFactory, unique: str
) -> None:
    service = await traced_service(OTEL_TRACES_SAMPLER="always_off")

    assert await get(service.process.base_url, "/api/v1/users/987654321", f"unsampled-{unique}") == 401
    assert await get(service.process.base_url, "/readyz", f"unsampled-ready-{unique}") == 200
    await service.process.stop()  # shutdown sends whatever was queued

    assert service.receiver.spans == []
