from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from app.clients.outbox import FileOutbox, Outbox, RedisOutbox, SpilloverOutbox
from app.clients.redis import RedisConnection
from app.models.events import Event

OutboxFactory = Callable[[], Outbox]


def make_events(n: int) -> list[Event]:
    return [Event.create("user.updated", {"id": i}, f"req-{i}") for i in range(n)]




@pytest.fixture(params=["file", "redis", "spillover"])
async def make_outbox(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> AsyncIterator[OutboxFactory]:
    """A factory, so a test can open a second instance on the same storage."""
    if request.param == "file":
        yield lambda: FileOutbox(tmp_path / "var")
        return
    connection = RedisConnection(request.getfixturevalue("redis_url"))
    await connection.start()
    key = f"test:outbox:{unique}"
    opened: list[SpilloverOutbox] = []

    def spillover() -> SpilloverOutbox:
        # One process at a time holds a spill file: the one before gives it up, as it would by exiting.
        for earlier in opened:
            earlier.close()
        opened.append(SpilloverOutbox(RedisOutbox(connection, key=key), tmp_path / "var"))
        return opened[-1]

    try:
        yield (lambda: RedisOutbox(connection, key=key)) if request.param == "redis" else spillover
    finally:
        for outbox in opened:
            outbox.close()
        await connection.client.delete([key, f"{key}:corrupt"])
        await connection.stop()


async def test_peek_returns_oldest_first_and_remove_drops_only_confirmed(make_outbox: OutboxFactory) -> None:
    outbox = make_outbox()
    events = make_events(5)
    for event in events:
        await outbox.append(event)

    assert await outbox.depth() == 5
    assert await outbox.peek(3) == events[:3]

    await outbox.remove([events[0].id, events[1].id])

    assert await outbox.peek(10) == events[2:]
    assert await outbox.depth() == 3


async def test_empty_outbox_peeks_nothing(make_outbox: OutboxFactory) -> None:
    outbox = make_outbox()

    assert await outbox.peek(10) == []
    assert await outbox.depth() == 0
    await outbox.remove(["no-such-id"])


async def test_a_new_instance_sees_what_the_last_one_left(make_outbox: OutboxFactory) -> None:
    events = make_events(4)
    first = make_outbox()
    for event in events:
        await first.append(event)
    await first.remove([events[0].id])

    second = make_outbox()

    assert await second.peek(10) == events[1:]
    await second.remove([events[1].id])
    assert await second.peek(10) == events[2:]


async def test_an_event_s_headers_are_kept_with_it(make_outbox: OutboxFactory) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = attrs.evolve(make_events(1)[0], headers={"traceparent": traceparent})
    await make_outbox().append(traced)

    (read,) = await make_outbox().peek(10)

    assert read == traced
    assert read.headers == {"traceparent": traceparent}


async def test_concurrent_appends_are_all_kept(make_outbox: OutboxFactory) -> None:
    outbox = make_outbox()
    events = make_events(50)

    await asyncio.gather(*(outbox.append(event) for event in events))

    assert sorted(e.id for e in await outbox.peek(100)) == sorted(e.id for e in events)


async def test_file_outbox_skips_a_torn_last_line_and_keeps_appending(tmp_path: Path) -> None:
    events = make_events(2)
    outbox = FileOutbox(tmp_path)
    await outbox.append(events[0])
    with outbox.path.open("ab") as file:
        file.write(b'{"id": "torn')

    reopened = FileOutbox(tmp_path)
    await reopened.append(events[1])

    assert await FileOutbox(tmp_path).peek(10) == events


async def test_file_outbox_is_one_json_line_per_event(tmp_path: Path) -> None:
    events = make_events(3)
    outbox = FileOutbox(tmp_path)
    for event in events:
        await outbox.append(event)
    await outbox.remove([events[1].id])

    lines = (tmp_path / "outbox.jsonl").read_bytes().splitlines()

    assert [Event.from_json(line) for line in lines] == [events[0], events[2]]


async def test_file_outbox_is_for_the_services_user_alone(tmp_path: Path) -> None:
    # Its events carry users' emails and names: the file was 0644, readable by anyone on the host.
    path = tmp_path / "outbox.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)  # made by an earlier release
    outbox = FileOutbox(tmp_path)
    events = make_events(2)
    for event in events:
        await outbox.append(event)
    assert path.stat().st_mode & 0o777 == 0o600
    await outbox.remove([events[0].id])  # rewritten through a temporary file
    assert path.stat().st_mode & 0o777 == 0o600


async def test_redis_outbox_moves_an_unreadable_entry_aside(redis_connection: RedisConnection, unique: str) -> None:
    key = f"test:outbox:{unique}"
    outbox = RedisOutbox(redis_connection, key=key)
    client = redis_connection.client
    event = make_events(1)[0]
    try:
        await client.rpush(key, ["garbage"])
        await outbox.append(event)

        assert await outbox.peek(10) == [event]
        assert await client.lrange(f"{key}:corrupt", 0, -1) == ["garbage"]
    finally:
        await client.delete([key, f"{key}:corrupt"])


# --- the shared outbox failing: the spill file -------------------------------------------------
@pytest.fixture
async def dead_redis() -> AsyncIterator[RedisConnection]:
    """A Redis client whose server never answers (nothing listens on the port)."""
    connection = RedisConnection("redis://127.0.0.1:1/0")
    await connection.start()
    yield connection
    await connection.stop()


async def test_events_the_shared_outbox_refuses_wait_in_a_local_file_and_are_delivered_from_it(
    dead_redis: RedisConnection, tmp_path: Path
) -> None:
    outbox = SpilloverOutbox(RedisOutbox(dead_redis), tmp_path / "var")
    events = make_events(3)
    for event in events:
        await outbox.append(event)  # Redis and the broker down at once: before, only a log line

    assert await outbox.depth() == 3
    assert await outbox.peek(10) == events
    await outbox.remove([events[0].id])
    assert await outbox.peek(10) == events[1:]
    outbox.close()
    # The next process (a restart) claims the file and delivers what it holds.
    again = SpilloverOutbox(RedisOutbox(dead_redis), tmp_path / "var")
    assert await again.peek(10) == events[1:]
    again.close()


async def test_spilled_and_shared_events_are_delivered_oldest_first(
    dead_redis: RedisConnection, redis_connection: RedisConnection, tmp_path: Path, unique: str
) -> None:
    key = f"test:outbox:{unique}"
    first, second, third = make_events(3)
    live = SpilloverOutbox(RedisOutbox(redis_connection, key=key), tmp_path / "var")
    await live.append(first)
    live.close()
    cut_off = SpilloverOutbox(RedisOutbox(dead_redis, key=key), tmp_path / "var")
    await cut_off.append(second)  # Redis away for this one
    cut_off.close()
    back = SpilloverOutbox(RedisOutbox(redis_connection, key=key), tmp_path / "var")
    await back.append(third)
    try:
        assert await back.peek(10) == [first, second, third]
        await back.remove([first.id, second.id, third.id])
        assert await back.depth() == 0
    finally:
        back.close()
        await redis_connection.client.delete([key])


async def test_spilled_events_go_to_the_shared_outbox_ahead_of_new_ones_once_it_answers(
    dead_redis: RedisConnection, redis_connection: RedisConnection, tmp_path: Path, unique: str
) -> None:
    # Another process may be the one draining the shared outbox (this one lost its broker link):
    # an event left in the file would reach consumers after the later events of its user.
    key = f"test:outbox:{unique}"
    created, changed, deleted = make_events(3)
    cut_off = SpilloverOutbox(RedisOutbox(dead_redis, key=key), tmp_path / "var")
    await cut_off.append(created)  # Redis (and the broker) away
    cut_off.close()
    back = SpilloverOutbox(RedisOutbox(redis_connection, key=key), tmp_path / "var")
    seen_by_others = RedisOutbox(redis_connection, key=key)
    try:
        await back.append(changed)
        assert await seen_by_others.peek(10) == [created, changed]
        assert await (await back._file()).depth() == 0
        back.close()
        # Without a new event: the next look at the depth moves them (the publisher looks often).
        spilled = SpilloverOutbox(RedisOutbox(dead_redis, key=key), tmp_path / "var")
        await spilled.append(deleted)
        spilled.close()
        looked = SpilloverOutbox(RedisOutbox(redis_connection, key=key), tmp_path / "var")
        assert await looked.depth() == 3
        assert await seen_by_others.peek(10) == [created, changed, deleted]
        looked.close()
    finally:
        back.close()
        await redis_connection.client.delete([key])


async def test_each_process_claims_a_spill_file_of_its_own(dead_redis: RedisConnection, tmp_path: Path) -> None:
    one = SpilloverOutbox(RedisOutbox(dead_redis), tmp_path / "var")
    two = SpilloverOutbox(RedisOutbox(dead_redis), tmp_path / "var")
    await one.append(make_events(1)[0])
    await two.append(make_events(1)[0])
    assert sorted(path.name for path in (tmp_path / "var").glob("*.jsonl")) == [
        "outbox-spill-0.jsonl", "outbox-spill-1.jsonl",
    ]
    one.close()
    two.close()
