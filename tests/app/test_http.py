"""The engine through real HTTP: step order, answering at once, every error status the core owns."""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from app import hookimpl
from app.pipeline.content_coding import UNREADABLE_BODY
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES, json_lines
from tests.fixtures import sample_plugin

Client = TestClient[web.Request, web.Application]
PROBLEM = "application/problem+json"


async def assert_problem(resp: web.StreamResponse | object, status: int) -> dict[str, object]:
    from aiohttp import ClientResponse

    assert isinstance(resp, ClientResponse)
    assert resp.status == status
    assert resp.content_type == PROBLEM
    body = await resp.json(content_type=PROBLEM)
    assert body["status"] == status
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert set(body) >= {"type", "title", "status", "detail", "request_id"}
    return dict(body)


async def test_steps_run_outermost_first_and_unwind_in_reverse(client: Client) -> None:
    resp = await client.post("/widgets/3", json={"name": "w", "size": 2})
    assert resp.status == 201
    body = await resp.json()
    assert body["trail"] == ["in:a", "in:b"]
    assert resp.headers["X-Trail"] == "out:b,out:a"
    assert body["params"] == {"slot": "3"}
    assert body["body"] == {"name": "w", "size": 2}


async def test_transform_request_hook_runs_before_validation(client: Client) -> None:
    resp = await client.post("/widgets/1", json={"name": "  padded  ", "size": 1})
    assert (await resp.json())["body"]["name"] == "padded"


class WrongTransforms:
    """A team's transform_request with a bug: it returns what no body can be."""

    @hookimpl
    def transform_request(self, body: dict[str, Any]) -> Any:
        return {"list": [body], "text": "a body", "false": False}.get(str(body.get("name")))


@pytest.mark.parametrize("wrong", ["list", "text", "false"])
async def test_a_transform_returning_no_body_is_the_plugins_500_not_the_clients_422(
    turnstile: StartService, caplog: pytest.LogCaptureFixture, wrong: str
) -> None:
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin, WrongTransforms()], entrypoints=False)
    with caplog.at_level(logging.ERROR, logger="turnstile.plugins"):
        resp = await service.client.post("/widgets/1", json={"name": wrong, "size": 1})
    problem = await assert_problem(resp, 500)
    assert problem["detail"] == "A business rule failed."
    assert "transform_request" in caplog.text


async def test_a_step_can_answer_at_once(client: Client) -> None:
    resp = await client.get("/teapot")
    assert resp.status == 418
    assert await resp.json() == {"answered": "at once"}
    assert resp.headers["X-Trail"] == "out:outer"


async def test_business_rule_rejects_a_request(client: Client) -> None:
    resp = await client.post("/widgets/1", json={"name": "x@rival.example", "size": 1})
    body = await assert_problem(resp, 403)
    assert body["detail"] == "Widgets from rival.example are not accepted."


async def test_failing_hook_is_a_500_not_a_hang(client: Client) -> None:
    resp = await client.post("/widgets/1", json={"name": "explode", "size": 1})
    body = await assert_problem(resp, 500)
    assert "bug" not in str(body)


async def test_500_carries_nothing_internal(client: Client) -> None:
    resp = await client.get("/broken")
    body = await assert_problem(resp, 500)
    text = str(body)
    assert "secret" not in text
    assert "/srv" not in text
    assert "Traceback" not in text


async def test_malformed_json_is_400(client: Client) -> None:
    resp = await client.post("/widgets/1", data=b"{not json", headers={"Content-Type": "application/json"})
    await assert_problem(resp, 400)


async def test_a_body_that_does_not_decode_is_400_and_logs_no_error(client: Client, json_logs: io.StringIO) -> None:
    # A client's broken Content-Encoding is its own fault: a 400, and no ERROR with a
    # traceback per request for a hostile client to fill the logs with.
    resp = await client.post("/widgets/1", data=b"not gzip at all",
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert (await assert_problem(resp, 400))["detail"] == UNREADABLE_BODY
    await asyncio.sleep(0.2)  # aiohttp drains what is left of the body after the answer
    lines = json_lines(json_logs)
    assert [line for line in lines if line["level"] == "ERROR"] == []
    assert any(line["logger"] == "turnstile.access" and " 400 " in line["msg"] for line in lines), lines


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed(
    turnstile: StartService,
) -> None:
    # A client that sends its headers, then trickles (or withholds) the body, must not hold the
    # request open for as long as it likes.
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False,
                              env={"TURNSTILE_BODY_TIMEOUT_S": "0.5"})
    server = service.client.server
    reader, writer = await asyncio.open_connection(str(server.host), int(server.port or 0))
    try:
        writer.write(b"POST /widgets/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"name\": ")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"Content-Type: application/problem+json" in head
        assert b"Connection: close" in head  # what is left of the body never becomes a request
    finally:
        writer.close()


async def test_a_client_gone_mid_body_is_a_499_not_a_server_error(
    turnstile: StartService, json_logs: io.StringIO,
) -> None:
    # Re-raised, the disconnect reached aiohttp as a 500: counted in the 5xx ratio the alerts
    # watch, with an ERROR traceback per request, any client able to send as many as it liked.
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False)
    server = service.client.server
    runner = server.runner
    assert runner is not None
    assert runner.server is not None
    runner.server.handler_cancellation = False  # as `turnstile serve` runs it

    def counted(status: int) -> float:
        labels = {"pipeline": "echo_widget", "method": "POST", "status": str(status)}
        return REGISTRY.get_sample_value("turnstile_requests_total", labels) or 0.0

    before = {status: counted(status) for status in (499, 500)}
    for _ in range(3):
        _reader, writer = await asyncio.open_connection(str(server.host), int(server.port or 0))
        writer.write(b"POST /widgets/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"name\": ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
    for _ in range(50):
        if counted(499) == before[499] + 3:
            break
        await asyncio.sleep(0.05)
    assert counted(499) == before[499] + 3
    assert counted(500) == before[500]
    lines = json_lines(json_logs)
    assert [line for line in lines if line["level"] == "ERROR"] == []
    assert sum(line["msg"].startswith("POST /widgets/1 499 ") for line in lines) == 3, lines


@pytest.mark.parametrize("expect", [True, False])
async def test_a_body_declared_too_large_is_413_before_a_byte_of_it_is_read(
    turnstile: StartService, expect: bool,
) -> None:
    # 100 Continue invited a 100 MiB upload; without Expect, a megabyte of it was read (or 30 s
    # waited for) before the 413.
    service = await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False)
    server = service.client.server
    reader, writer = await asyncio.open_connection(str(server.host), int(server.port or 0))
    try:
        writer.write(b"POST /widgets/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + (b"Expect: 100-continue\r\n" if expect else b"") + b"Content-Length: 104857600\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413 "), head  # no "100 Continue" first
        assert b"Content-Type: application/problem+json" in head
        assert b"Connection: close" in head
    finally:
        writer.close()


async def test_a_gzip_body_is_read_decoded(client: Client) -> None:
    resp = await client.post("/widgets/1", data=gzip.compress(orjson.dumps({"name": "w", "size": 2})),
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["body"] == {"name": "w", "size": 2}


async def test_unknown_path_is_404_with_request_id(client: Client) -> None:
    resp = await client.get("/nowhere", headers={"X-Request-ID": "trace-404"})
    body = await assert_problem(resp, 404)
    assert body["request_id"] == "trace-404"


async def test_non_matching_int_parameter_is_404(client: Client) -> None:
    resp = await client.post("/widgets/abc", json={"name": "w", "size": 1})
    await assert_problem(resp, 404)


async def test_wrong_method_is_405_with_allow(client: Client) -> None:
    resp = await client.delete("/things/x")
    await assert_problem(resp, 405)
    assert resp.headers["Allow"] == "GET,HEAD"


async def test_head_runs_the_get_pipeline_and_answers_its_status_and_headers_without_a_body(client: Client) -> None:
    # RFC 9110 §9.3.2: HEAD is GET without the content, so each step runs as for GET.
    before = REGISTRY.get_sample_value(
        "turnstile_requests_total", {"method": "HEAD", "pipeline": "short_circuit", "status": "418"}) or 0.0
    got, head = await client.get("/teapot"), await client.head("/teapot")
    assert (head.status, got.status) == (418, 418)
    assert head.headers["X-Trail"] == got.headers["X-Trail"] == "out:outer"
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert await head.read() == b""
    after = REGISTRY.get_sample_value(
        "turnstile_requests_total", {"method": "HEAD", "pipeline": "short_circuit", "status": "418"})
    assert after == before + 1  # counted under its pipeline's name
    assert (await client.head("/widgets/1")).status == 405  # a route without GET has no HEAD


async def test_body_over_one_mib_is_413(client: Client) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'", "size": 1}'
    resp = await client.post("/widgets/1", data=io.BytesIO(big), headers={"Content-Type": "application/json"})
    await assert_problem(resp, 413)


async def test_wrong_content_type_is_415(client: Client) -> None:
    resp = await client.post("/widgets/1", data=b"name=w", headers={"Content-Type": "text/plain"})
    await assert_problem(resp, 415)


async def test_invalid_fields_are_422_one_entry_each(client: Client) -> None:
    resp = await client.post("/widgets/1", json={"name": 5, "size": 0, "colour": "red", "tags": ["a", 7]})
    body = await assert_problem(resp, 422)
    errors = {tuple(e["loc"]): e["msg"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert errors == {
        ("body", "name"): "expected a string",
        ("body", "size"): "must be at least 1",
        ("body", "colour"): "unknown field",
        ("body", "tags", 1): "expected a string",
    }


async def test_a_member_sent_twice_is_422_wherever_it_is(client: Client) -> None:
    # Never resolved by order: a proxy that keeps the first "name" would check another value
    # than the one the steps act on. Nested objects are named by their full path.
    body = b'{"name": "w", "size": 2, "name": "x", "tags": ["a"], "meta": {"k": 1, "k": 2, "k": 3}}'
    resp = await client.post("/widgets/1", data=body, headers={"Content-Type": "application/json"})
    problem = await assert_problem(resp, 422)
    assert problem["errors"] == [
        {"loc": ["body", "name"], "msg": "sent more than once"},
        {"loc": ["body", "meta", "k"], "msg": "sent more than once"},
    ]


async def test_an_oversized_body_is_refused_for_its_size_before_any_look_for_repeats(client: Client) -> None:
    # Sizes first (cheap, and they bound the rest): the second parse that finds repeated
    # names only ever reads a body within the model's maxima.
    body = b'{"name": "' + b"w" * 51 + b'", "size": 2, "size": 3}'
    resp = await client.post("/widgets/1", data=body, headers={"Content-Type": "application/json"})
    problem = await assert_problem(resp, 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", "name"]]  # type: ignore[attr-defined]


async def test_the_same_name_in_different_objects_is_no_repeat(client: Client) -> None:
    resp = await client.post("/widgets/1", json={"name": "w", "size": 2, "tags": ["name"]})
    assert resp.status == 201


async def test_missing_fields_are_422(client: Client) -> None:
    resp = await client.post("/widgets/1", json={})
    body = await assert_problem(resp, 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "name"], ["body", "size"]]  # type: ignore[attr-defined]


async def test_request_id_is_accepted_when_safe(client: Client) -> None:
    resp = await client.get("/things/a", headers={"X-Request-ID": "abc-123_X.y"})
    assert resp.headers["X-Request-ID"] == "abc-123_X.y"


async def test_request_id_is_generated_when_absent(client: Client) -> None:
    resp = await client.get("/things/a")
    assert len(resp.headers["X-Request-ID"]) >= 16


async def test_unsafe_request_id_is_replaced(client: Client) -> None:
    for unsafe in ("has space", "x" * 129, "semi;colon", "ünïcode"):
        resp = await client.get("/things/a", headers={"X-Request-ID": unsafe})
        assert resp.headers["X-Request-ID"] != unsafe
        assert len(resp.headers["X-Request-ID"]) >= 16
