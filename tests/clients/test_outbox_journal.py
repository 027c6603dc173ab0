"""The Redis outbox through a Redis that loses its data: restarted without persistence (empty) or
from an older save (a failover that lost its last writes). Each "process" is a RedisOutbox of
its own on a connection of its own, as two pods would be."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import pytest
from coredis._utils import hash_slot  # the client's own slot function
from prometheus_client import REGISTRY

from app.clients import outbox_journal
from app.clients.outbox import DEFAULT_REDIS_KEY, RedisOutbox
from app.clients.redis import RedisConnection
from app.models.events import Event
from tests.integration.amqp_capture import eventually
from tests.snapshot_redis import SnapshotRedis

Process = Callable[[], RedisOutbox]


def event(n: int) -> Event:
    return Event.create("user.updated", {"id": n}, f"req-{n}")


def restored() -> float:
    return REGISTRY.get_sample_value("turnstile_outbox_events_restored_total") or 0.0


@pytest.fixture
async def process(snapshot_redis: SnapshotRedis) -> AsyncIterator[Process]:
    """Makes "processes": outboxes on connections of their own to the test's Redis."""
    connections: list[RedisConnection] = []

    def make() -> RedisOutbox:
        connections.append(RedisConnection(snapshot_redis.url))
        return RedisOutbox(connections[-1])

    yield make
    for connection in connections:
        await connection.stop()


async def started(outbox: RedisOutbox) -> RedisOutbox:
    await outbox._connection.start()  # type: ignore[attr-defined]
    return outbox


async def depth_once_answering(outbox: RedisOutbox) -> int:
    """The depth, once the connection is back after the restart."""
    depths: list[int] = []

    async def read() -> bool:
        try:
            depths.append(await outbox.depth())
        except Exception:  # reconnecting
            return False
        return True

    await eventually(read, 10, "Redis answered again")
    return depths[-1]


async def ids_in(outbox: RedisOutbox) -> list[str]:
    return [e.id for e in await outbox.peek(100)]


async def test_events_a_redis_restarted_empty_lost_are_put_back_in_order(
    process: Process, snapshot_redis: SnapshotRedis, caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = await started(process())
    events = [event(n) for n in range(3)]
    for e in events:
        await outbox.append(e)
    before = restored()

    await snapshot_redis.roll_back()  # never saved: it comes back empty

    with caplog.at_level(logging.ERROR, logger="turnstile.outbox"):
        assert await depth_once_answering(outbox) == 3
    assert await ids_in(outbox) == [e.id for e in events]
    assert restored() == before + 3
    assert any("3 events this process outboxed" in r.getMessage() for r in caplog.records)
    # Put back once: reading again changes nothing.
    assert await outbox.depth() == 3


async def test_every_process_puts_back_its_own_events_when_redis_rolls_back(
    process: Process, snapshot_redis: SnapshotRedis,
) -> None:
    one, other = await started(process()), await started(process())
    a1, b1, a2, b2 = event(1), event(2), event(3), event(4)
    await one.append(a1)
    await other.append(b1)
    await snapshot_redis.snapshot()  # a1 and b1 are in the save
    await one.append(a2)
    await other.append(b2)

    await snapshot_redis.roll_back()  # a2 and b2 are lost, and the count of appends went from 4 to 2

    await depth_once_answering(one)  # notices the count gone down: puts a1 and a2 back
    # `one`'s appends brought the count back to 4, which is all `other` saw: it must notice
    # all the same (the epoch `one` drew), and put b1 and b2 back.
    await depth_once_answering(other)
    waiting = await ids_in(one)
    assert {a1.id, b1.id, a2.id, b2.id} <= set(waiting)
    assert waiting.index(a1.id) < waiting.index(a2.id)
    assert waiting.index(b1.id) < waiting.index(b2.id)


async def test_a_process_appending_first_after_the_loss_puts_back_what_came_before(
    process: Process, snapshot_redis: SnapshotRedis,
) -> None:
    outbox = await started(process())
    lost = event(1)
    await outbox.append(lost)
    await snapshot_redis.roll_back()
    later = event(2)

    async def appended() -> bool:
        try:
            await outbox.append(later)
        except Exception:  # reconnecting
            return False
        return True

    await eventually(appended, 10, "Redis answered again")
    assert await ids_in(outbox) == [later.id, lost.id]


async def test_what_was_delivered_is_not_put_back(process: Process, snapshot_redis: SnapshotRedis) -> None:
    outbox, drainer = await started(process()), await started(process())
    by_another, by_itself = event(1), event(2)
    await outbox.append(by_another)
    await outbox.append(by_itself)
    await outbox.remove([by_itself.id])  # confirmed to this process
    await drainer.remove([by_another.id])  # delivered by another process
    assert await outbox.depth() == 0  # this process sees its events gone, Redis unchanged: delivered

    before = restored()
    await snapshot_redis.roll_back()

    assert await depth_once_answering(outbox) == 0
    assert restored() == before


async def test_a_restart_with_everything_puts_nothing_back(process: Process, snapshot_redis: SnapshotRedis) -> None:
    outbox = await started(process())
    waiting = event(1)
    await outbox.append(waiting)
    await snapshot_redis.snapshot()
    before = restored()

    await snapshot_redis.roll_back()

    assert await depth_once_answering(outbox) == 1
    assert restored() == before


async def test_past_its_limit_a_process_forgets_its_oldest_events_and_says_so(
    process: Process, snapshot_redis: SnapshotRedis, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(outbox_journal, "JOURNAL_LIMIT", 2)
    outbox = await started(process())
    events = [event(n) for n in range(3)]
    with caplog.at_level(logging.WARNING, logger="turnstile.outbox"):
        for e in events:
            await outbox.append(e)
    assert any("would not be put back" in r.getMessage() for r in caplog.records)

    await snapshot_redis.roll_back()

    assert await depth_once_answering(outbox) == 2
    assert await ids_in(outbox) == [e.id for e in events[1:]]


async def test_the_companion_keys_share_the_outbox_s_cluster_slot() -> None:
    for name in ("epoch", "appends"):
        key = outbox_journal.companion_key(DEFAULT_REDIS_KEY, name)
        assert hash_slot(key.encode()) == hash_slot(DEFAULT_REDIS_KEY.encode())
        tagged = outbox_journal.companion_key("{team}:outbox", name)
        assert hash_slot(tagged.encode()) == hash_slot(b"{team}:outbox")
