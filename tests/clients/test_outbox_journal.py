"""The Redis outbox through a Redis that loses its data: restarted without persistence (empty) or
from an older save (a failover that lost its last writes). Each "process" is a RedisOutbox of
its own on a connection of its own, as two pods would be."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from coredis._utils import hash_slot  # the client's own slot function
from prometheus_client import REGISTRY

from app.clients import outbox_journal
from app.clients.outbox import DEFAULT_REDIS_KEY, RedisOutbox
from app.clients.redis import RedisConnection, RedisUnavailable
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


async def depth_once_answering_or_failing(outbox: RedisOutbox) -> int:
    """The depth once the connection is back, or the error of a read that reached Redis."""
    for _ in range(100):
        try:
            return await outbox.depth()
        except RedisUnavailable as exc:
            if "injected" in str(exc):
                raise
        await asyncio.sleep(0.1)
    pytest.fail("Redis did not answer again")


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


async def test_every_process_puts_back_its_own_lost_events_when_redis_rolls_back(
    process: Process, snapshot_redis: SnapshotRedis,
) -> None:
    one, other = await started(process()), await started(process())
    a1, b1, a2, b2 = event(1), event(2), event(3), event(4)
    await one.append(a1)
    await other.append(b1)
    await snapshot_redis.snapshot()  # a1 and b1 are in the save
    await one.append(a2)
    await other.append(b2)
    before = restored()

    await snapshot_redis.roll_back()  # a2 and b2 are lost

    await depth_once_answering(one)
    await depth_once_answering(other)
    assert await ids_in(one) == [a1.id, b1.id, a2.id, b2.id]  # the lost ones, and only they, put back
    assert restored() == before + 2


async def test_a_loss_is_noticed_after_other_processes_appended_as_many_again(
    process: Process, snapshot_redis: SnapshotRedis,
) -> None:
    one, other = await started(process()), await started(process())
    await other.append(event(1))
    await snapshot_redis.snapshot()
    lost = [event(2), event(3)]
    for e in lost:
        await one.append(e)
    await snapshot_redis.roll_back()  # `one`'s two events are gone

    async def appended(e: Event) -> bool:
        try:
            await other.append(e)
        except Exception:  # reconnecting
            return False
        return True

    for e in [event(n) for n in range(4, 7)]:  # more appends than `one` lost, before `one` looks
        await eventually(functools.partial(appended, e), 10, "Redis answered again")

    await depth_once_answering(one)
    waiting = await ids_in(one)
    assert waiting[-2:] == [e.id for e in lost]
    assert len(waiting) == 6


async def test_a_put_back_cut_short_by_redis_is_finished_at_the_next_check(
    process: Process, snapshot_redis: SnapshotRedis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_journal, "RESTORE_BATCH", 2)
    outbox = await started(process())
    events = [event(n) for n in range(5)]
    for e in events:
        await outbox.append(e)
    await snapshot_redis.roll_back()
    journal = outbox._journal  # its Redis made to fail once, mid-way
    push = journal._push
    calls = 0

    async def failing_second_batch(texts: list[str]) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RedisUnavailable("injected: connection lost mid-way")
        return await push(texts)

    monkeypatch.setattr(journal, "_push", failing_second_batch)
    with pytest.raises(RedisUnavailable):
        await depth_once_answering_or_failing(outbox)
    assert calls == 2  # the first batch is back, the second failed
    assert await outbox.depth() == 5
    assert await ids_in(outbox) == [e.id for e in events]


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


async def test_texts_kept_to_remove_entries_go_once_the_outbox_is_empty(process: Process) -> None:
    outbox, drainer = await started(process()), await started(process())
    events = [event(n) for n in range(5)]
    for e in events:
        await outbox.append(e)
    await outbox.peek(5)
    await drainer.remove([e.id for e in events])  # delivered by another process

    assert await outbox.depth() == 0
    assert outbox._stored == {}  # nothing held for entries that are gone


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
    for name in ("writer:1f2e", "writer:9a0b"):
        key = outbox_journal.companion_key(DEFAULT_REDIS_KEY, name)
        assert hash_slot(key.encode()) == hash_slot(DEFAULT_REDIS_KEY.encode())
        tagged = outbox_journal.companion_key("{team}:outbox", name)
        assert hash_slot(tagged.encode()) == hash_slot(b"{team}:outbox")
