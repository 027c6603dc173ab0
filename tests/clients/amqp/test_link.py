"""`BrokerLink`: opens, prepares, hands over; reconnects when lost; an outage is two log lines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from aiormq.abc import AbstractChannel

from app.clients.amqp.link import BrokerLink, ConnectionLost, LinkState, Opened
from tests.clients.amqp.broker import FreezableProxy

LOGGER = "turnstile.amqp.link"


def make_link(url: str, prepared: list[AbstractChannel], states: list[LinkState] | None = None) -> BrokerLink:
    async def prepare(channel: AbstractChannel) -> None:
        prepared.append(channel)

    on_state: Callable[[LinkState], None] | None = states.append if states is not None else None
    return BrokerLink(
        url, name="test link", prepare=prepare, connect_timeout_s=2.0,
        reconnect_base_s=0.05, reconnect_max_s=0.2, on_state=on_state,
    )


async def test_each_session_gets_a_prepared_channel_and_a_lost_one_is_reopened(amqp_url: str) -> None:
    prepared: list[AbstractChannel] = []
    states: list[LinkState] = []
    link = make_link(amqp_url, prepared, states)
    stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sessions: list[Opened] = []

    async def session(opened: Opened) -> None:
        sessions.append(opened)
        assert opened.channel is prepared[-1]
        if len(sessions) == 1:
            msg = "the first channel broke"
            raise ConnectionLost(msg)
        stopping.set_result(None)

    await asyncio.wait_for(link.run(session, stopping), 10)

    assert len(sessions) == 2
    assert sessions[0].connection.is_closed
    assert sessions[1].connection.is_closed  # nothing stays open after run
    assert states == ["connecting", "connected", "disconnected"] * 2
    assert link.state == "disconnected"


async def test_an_outage_is_one_warning_and_one_recovery_line(amqp_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with FreezableProxy(amqp_url) as proxy:
        await proxy.go_down()
        link = make_link(proxy.url, [])
        stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connected = asyncio.Event()

        async def session(opened: Opened) -> None:
            connected.set()
            await stopping

        runner = asyncio.create_task(link.run(session, stopping))
        await asyncio.sleep(1.0)  # several failed attempts with the backoff capped at 0.2 s
        await proxy.come_back()
        await asyncio.wait_for(connected.wait(), 10)
        stopping.set_result(None)
        await asyncio.wait_for(runner, 10)

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    warnings = [m for level, m in lines if level == logging.WARNING]
    infos = [m for level, m in lines if level == logging.INFO]
    assert len(warnings) == 1
    assert warnings[0].startswith("test link: cannot connect")
    assert len(infos) == 1
    assert infos[0].startswith("test link: broker reachable again after ")
    assert sum(level == logging.DEBUG for level, _ in lines) >= 2  # the attempts in between


async def test_a_session_bug_reconnects_instead_of_ending_the_link(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    link = make_link(amqp_url, [])
    stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    calls = 0

    async def session(opened: Opened) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            msg = "a bug"
            raise ValueError(msg)
        stopping.set_result(None)

    await asyncio.wait_for(link.run(session, stopping), 10)

    assert calls == 2
    assert any("session failed" in r.getMessage() and r.exc_info for r in caplog.records if r.name == LOGGER)


async def test_stop_while_unreachable_returns_at_once() -> None:
    link = make_link("amqp://guest:guest@127.0.0.1:1/", [])
    stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def session(opened: Opened) -> None:
        pytest.fail("nothing listens there")

    runner = asyncio.create_task(link.run(session, stopping))
    await asyncio.sleep(0.3)
    stopping.set_result(None)
    await asyncio.wait_for(runner, 1.0)
    assert link.state == "disconnected"
