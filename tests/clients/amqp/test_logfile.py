"""The embedded publisher: one JSON line per event, written before `publish` returns."""

from __future__ import annotations

from pathlib import Path

from app.clients.amqp import LogFilePublisher
from app.models.events import Event


async def test_log_file_publisher_writes_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "var" / "events.jsonl"
    publisher = LogFilePublisher(path)
    await publisher.start()
    events = [Event.create("user.created", {"id": i}, "r") for i in range(2)]

    outcomes = [await publisher.publish(event) for event in events]
    await publisher.stop()

    assert outcomes == ["logged", "logged"]
    assert publisher.state == "embedded"
    assert await publisher.ready()
    assert [Event.from_json(line) for line in path.read_bytes().splitlines()] == events
    assert path.stat().st_mode & 0o777 == 0o600  # users' emails and names: the service's user alone
