"""`RedisHealth`: the state of every node, and an outage told in one line, its end in another."""

from __future__ import annotations

import logging

import pytest

from app.clients.redis.health import HealthState, RedisHealth

LOGGER = "turnstile.redis"


class Nodes:
    """A probe whose answers the test sets."""

    def __init__(self, *names: str) -> None:
        self.answers: dict[str, str | None] = dict.fromkeys(names)

    async def __call__(self) -> dict[str, str | None]:
        return dict(self.answers)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_states_follow_how_many_nodes_answer() -> None:
    nodes = Nodes("a:1", "b:2", "c:3")
    health = RedisHealth("Redis (cluster)", nodes)
    assert await health.check() == "ok"
    nodes.answers["b:2"] = "ConnectionError: refused"
    assert await health.check() == "degraded"
    assert health.details() == {"nodes": {"a:1": "ok", "b:2": "down", "c:3": "ok"}}
    nodes.answers = dict.fromkeys(nodes.answers, "ConnectionError: refused")
    assert await health.check() == "down"


async def test_an_outage_is_one_warning_and_its_end_one_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    nodes = Nodes("h:6379")
    health = RedisHealth("Redis (standalone)", nodes)
    await health.check()
    nodes.answers["h:6379"] = "ConnectionError: refused"
    for _ in range(5):
        await health.check()
    nodes.answers["h:6379"] = None
    await health.check()
    await health.check()

    (warning, info) = lines(caplog)
    assert warning[0] == logging.WARNING
    assert warning[1].startswith("Redis (standalone) unavailable (h:6379: ConnectionError: refused)")
    assert info[0] == logging.INFO
    assert info[1].startswith("Redis (standalone) answering again after ")


async def test_each_change_during_an_outage_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    nodes = Nodes("a:1", "b:2", "c:3")
    health = RedisHealth("Redis (cluster)", nodes)
    await health.check()
    nodes.answers["b:2"] = "refused"
    await health.check()
    nodes.answers["c:3"] = "refused"
    await health.check()
    await health.check()
    nodes.answers["c:3"] = None
    await health.check()
    nodes.answers["b:2"] = None
    await health.check()

    assert [(level, message.split(" (")[0]) for level, message in lines(caplog)] == [
        (logging.WARNING, "Redis"),  # "Redis (cluster) degraded (b:2: refused) ..."
        (logging.WARNING, "Redis"),
        (logging.INFO, "Redis"),
        (logging.INFO, "Redis"),
    ]
    messages = [message for _, message in lines(caplog)]
    assert "degraded" in messages[0]
    assert "now degraded (b:2: refused; c:3: refused)" in messages[1]
    assert "partly answering again" in messages[2]
    assert "answering again after" in messages[3]


async def test_a_down_start_is_told_once(caplog: pytest.LogCaptureFixture) -> None:
    nodes = Nodes("h:6379")
    nodes.answers["h:6379"] = "refused"
    health = RedisHealth("Redis (standalone)", nodes)
    await health.check()
    await health.check()
    assert [level for level, _ in lines(caplog)] == [logging.WARNING]


async def test_hooks_run_after_each_check_with_the_state() -> None:
    nodes = Nodes("h:6379")
    health = RedisHealth("Redis (standalone)", nodes)
    seen: list[HealthState] = []

    async def hook(state: HealthState) -> None:
        seen.append(state)

    health.on_checked.append(hook)
    await health.check()
    nodes.answers["h:6379"] = "refused"
    await health.check()
    assert seen == ["ok", "down"]
