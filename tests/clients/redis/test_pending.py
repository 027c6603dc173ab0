"""`PendingWrites`: writes kept through an outage, made in order once Redis takes them."""

from __future__ import annotations

import logging

import pytest

from app.clients.redis import RedisUnavailable
from app.clients.redis.pending import PendingWrites, Replay


class Target:
    """What the replays write to; `down` makes them fail as an unreachable Redis would."""

    def __init__(self) -> None:
        self.down = True
        self.written: list[tuple[str, str]] = []

    def write(self, key: str, value: str) -> Replay:
        async def replay() -> None:
            if self.down:
                msg = "ConnectionError: refused"
                raise RedisUnavailable(msg)
            self.written.append((key, value))

        return replay


async def test_writes_wait_and_are_made_in_order_once_redis_takes_them() -> None:
    target = Target()
    pending = PendingWrites()
    pending.defer("a", "write a", target.write("a", "1"))
    pending.defer("b", "write b", target.write("b", "1"))
    assert pending.holds("a")
    assert not pending.holds("c")

    assert await pending.replay() == 0  # still down: both stay
    assert len(pending) == 2
    target.down = False
    assert await pending.replay() == 2
    assert target.written == [("a", "1"), ("b", "1")]
    assert len(pending) == 0
    assert not pending.holds("a")


async def test_a_later_write_to_the_same_key_replaces_the_earlier_one() -> None:
    target = Target()
    pending = PendingWrites()
    pending.defer("a", "first", target.write("a", "1"))
    pending.defer("a", "second", target.write("a", "2"))
    target.down = False
    await pending.replay()
    assert target.written == [("a", "2")]


async def test_each_deferral_is_told_and_the_replay_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="turnstile.redis")
    target = Target()
    pending = PendingWrites()
    pending.defer("user:7", "cache write of 'user:7'", target.write("user:7", "t"))
    target.down = False
    await pending.replay()
    messages = [r.getMessage() for r in caplog.records]
    assert any("cache write of 'user:7' deferred" in m for m in messages)
    assert any("made 1 Redis write(s) deferred during the outage" in m for m in messages)


async def test_an_outage_is_one_warning_however_many_writes_it_defers(caplog: pytest.LogCaptureFixture) -> None:
    # A subscription retrying its events while Redis is down defers the same writes again and again.
    caplog.set_level(logging.DEBUG, logger="turnstile.redis")
    target = Target()
    pending = PendingWrites()
    for n in range(20):
        pending.defer(f"user:{n % 3}", f"cache write of 'user:{n % 3}'", target.write(f"user:{n % 3}", "t"))
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 1
    target.down = False
    await pending.replay()
    caplog.clear()
    target.down = True
    pending.defer("user:9", "cache write of 'user:9'", target.write("user:9", "t"))  # the next outage
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


async def test_past_the_bound_the_oldest_go_first_with_one_error(caplog: pytest.LogCaptureFixture) -> None:
    target = Target()
    pending = PendingWrites(max_entries=2)
    for key in ("a", "b", "c", "d"):
        pending.defer(key, f"write {key}", target.write(key, "1"))
    assert [pending.holds(key) for key in ("a", "b", "c", "d")] == [False, False, True, True]
    assert sum(r.levelno == logging.ERROR for r in caplog.records) == 1
