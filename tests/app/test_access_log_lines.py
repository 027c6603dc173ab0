"""The production access log: the line made directly for the JSON handler is the line the
logging module would have written, in order with the other lines, and the direct path steps
aside whenever anything else listens (a capturing handler, a filter, text logs)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.logs import (
    JsonFormatter,
    JsonLinesHandler,
    RequestIdFilter,
    TextFormatter,
    direct_handler,
    iso_utc,
    json_line,
    setup_logging,
)
from app.middlewares.observe import ACCESS_LOGGER
from tests.app.conftest import json_lines

Client = TestClient[web.Request, web.Application]


@contextlib.contextmanager
def only_the_json_handler() -> Iterator[JsonLinesHandler]:
    """Take pytest's own capturing handlers off the root logger for a moment: with them on,
    the access line (rightly) goes through logging for them to see."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    ours = [h for h in handlers if isinstance(h, JsonLinesHandler)]
    root.handlers[:] = ours
    try:
        yield ours[0]
    finally:
        root.handlers[:] = handlers


@pytest.mark.parametrize("direct", [True, False], ids=["made directly", "through logging"])
async def test_a_request_writes_one_access_line_with_its_fields(
    client: Client, json_logs: io.StringIO, direct: bool
) -> None:
    with only_the_json_handler() if direct else contextlib.nullcontext():
        assert (direct_handler(logging.getLogger(ACCESS_LOGGER)) is not None) is direct
        resp = await client.get("/things/a", headers={"X-Request-ID": "direct-1"})
        assert resp.status == 200
        await asyncio.sleep(0)  # the loop iteration that writes the buffered lines
    access = [line for line in json_lines(json_logs) if line["logger"] == ACCESS_LOGGER]
    assert len(access) == 1
    line = access[0]
    assert list(line) == ["ts", "level", "logger", "msg", "request_id", "pipeline", "status", "duration_ms",
                          "client"]
    assert line["client"] == "127.0.0.1"  # the address the rate limits count
    assert line["level"] == "INFO"
    assert line["request_id"] == "direct-1"
    assert line["pipeline"] == "get_thing"
    assert line["status"] == 200
    assert line["msg"].startswith("GET /things/a 200 pipeline=get_thing ")


def test_the_direct_line_is_the_line_the_json_formatter_writes() -> None:
    extra = {"pipeline": "get_user", "status": 200, "duration_ms": 1.25, "client": "203.0.113.7"}
    record = logging.makeLogRecord({
        "name": ACCESS_LOGGER, "levelno": logging.INFO, "levelname": "INFO", "msg": "GET /x 200", "args": None,
        "created": 1_800_000_000.123456, "request_id": "r-1", **extra,
    })
    assert json_line(ACCESS_LOGGER, "GET /x 200", "r-1", extra, record.created) == JsonFormatter().format(record)


def test_buffered_lines_are_written_before_the_next_record_and_on_flush() -> None:
    out = io.StringIO()
    handler = JsonLinesHandler()
    handler.setStream(out)
    logger = logging.getLogger("tests.access_log_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        async def scenario() -> None:
            handler.write_line('{"n":1}')
            handler.write_line('{"n":2}')
            assert out.getvalue() == ""  # buffered until the loop iteration ends
            logger.warning("after")  # a record first writes what waits before it
            assert [json.loads(line).get("n", line) for line in out.getvalue().splitlines()][:2] == [1, 2]
            handler.write_line('{"n":3}')

        asyncio.run(scenario())
        handler.flush()  # what logging's shutdown calls at exit
        assert out.getvalue().splitlines()[-1] == '{"n":3}'
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_the_direct_path_steps_aside_when_something_else_listens(json_logs: io.StringIO) -> None:
    access = logging.getLogger(ACCESS_LOGGER)
    with only_the_json_handler() as ours:
        assert direct_handler(access) is ours
    assert direct_handler(access) is None  # pytest's capturing handlers listen too
    capture = logging.Handler()
    only_some = logging.Filter("nothing")
    with only_the_json_handler():
        access.addHandler(capture)  # a deployment's handler
        assert direct_handler(access) is None
        access.removeHandler(capture)
        access.addFilter(only_some)
        assert direct_handler(access) is None
        access.removeFilter(only_some)
    setup_logging("INFO", "text")
    assert not any(isinstance(h, JsonLinesHandler) for h in logging.getLogger().handlers)
    assert direct_handler(access) is None


@pytest.mark.parametrize(
    ("created", "text"),
    [
        (1_800_000_000.123456, "2027-01-15T08:00:00.123456+00:00"),
        (1_800_000_000.0, "2027-01-15T08:00:00.000000+00:00"),  # always six digits, unlike isoformat()
        (1_800_000_000.9999996, "2027-01-15T08:00:01.000000+00:00"),  # rounds into the next second
        (1_800_000_001.5, "2027-01-15T08:00:01.500000+00:00"),  # the cached second's text, reused
    ],
)
def test_line_times_are_utc_with_microseconds(created: float, text: str) -> None:
    assert iso_utc(created) == text


def test_a_text_line_stays_one_line_whatever_the_client_sent() -> None:
    # What a client controls reaches the message: a decoded path such as /nowhere%0A...%00
    record = logging.makeLogRecord({
        "name": "turnstile.access", "levelno": logging.INFO, "levelname": "INFO", "request_id": "r-1",
        "msg": "GET %s 404", "args": ("/nowhere\n2026-12-01 00:00:00,000 INFO turnstile.access [forged]\x00\r\t\x7f",),
    })
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith(r"GET /nowhere\n2026-12-01 00:00:00,000 INFO turnstile.access [forged]\x00\r\t\x7f 404")


def test_a_text_line_keeps_its_traceback_below_it() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed\nhere", "exc_info": sys.exc_info(), "request_id": "-"})
    first, *traceback = TextFormatter().format(record).splitlines()
    assert first.endswith(r"failed\nhere")
    assert traceback[0] == "Traceback (most recent call last):"


def test_a_request_id_passed_as_none_reads_as_the_current_one() -> None:
    # A client call made for no request passes `extra={"request_id": None}`: the field stays a string.
    record = logging.makeLogRecord({"msg": "x", "request_id": None})
    RequestIdFilter().filter(record)
    assert record.__dict__["request_id"] == "-"
