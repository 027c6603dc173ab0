"""Libraries' own log lines, as `turnstile serve` sets logging up: an outage is told once by
our clients, not once per retry by the library underneath."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

from app.clients.amqp import AmqpPublisher
from app.clients.outbox import FileOutbox
from app.models.events import Event
from tests.app.conftest import json_lines

UNREACHABLE_URL = "amqp://guest:guest@127.0.0.1:1/"


async def test_a_broker_outage_is_one_warning_however_often_the_publisher_retries(
    json_logs: io.StringIO, tmp_path: Path
) -> None:
    publisher = AmqpPublisher(UNREACHABLE_URL, "test.outage", FileOutbox(tmp_path),
                              reconnect_base_s=0.05, reconnect_max_s=0.1, connect_timeout_s=1.0)
    await publisher.start()
    try:
        assert await publisher.publish(Event.create("user.updated", {"id": 1}, "req-1"),
                                       confirm_deadline_s=0.2) == "outboxed"
        await asyncio.sleep(1.0)  # several reconnect attempts
    finally:
        await publisher.stop(0.2)

    logged = [(line["level"], line["logger"], line["msg"]) for line in json_lines(json_logs)]
    outage = [entry for entry in logged if "retrying with backoff until it answers" in entry[2]]
    assert len(outage) == 1, logged
    assert outage[0][0] == "WARNING"
    assert not [entry for entry in logged if entry[1].startswith("aiormq")], logged


def test_aiormq_s_other_lines_still_get_through(json_logs: io.StringIO) -> None:
    logging.getLogger("aiormq.connection").warning("Connection %r was blocked by: %r", "c", "low disk")

    assert [line["msg"] for line in json_lines(json_logs)] == ["Connection 'c' was blocked by: 'low disk'"]


def test_a_reader_ended_by_the_broker_going_away_is_not_logged_but_a_bad_frame_is(json_logs: io.StringIO) -> None:
    # What aiormq logs (with a traceback) for every connection the broker drops, and for a
    # frame it cannot read; the link logs the outage once, and only the second is news.
    reader = logging.getLogger("aiormq.connection")
    for cause in (ConnectionResetError(104, "Connection reset by peer"), asyncio.IncompleteReadError(b"", 7),
                  ValueError("malformed frame")):
        reader.warning("Cancelling cause reader exited abnormally", exc_info=cause)

    (line,) = json_lines(json_logs)
    assert line["msg"] == "Cancelling cause reader exited abnormally"
    assert "malformed frame" in line["exc"]
