"""The publisher's mailbox: bounded, first in first out, and no letter lost by its getter."""

from __future__ import annotations

import asyncio

from app.clients.amqp.mailbox import Letter, Mailbox
from app.models.events import Event


def letter(n: int) -> Letter:
    loop = asyncio.get_running_loop()
    return Letter(Event.create("user.updated", {"id": n}, f"r{n}"), loop.time() + 1, loop.create_future())


async def test_a_full_mailbox_refuses_a_letter() -> None:
    mailbox = Mailbox(2)
    assert mailbox.post(letter(1))
    assert mailbox.post(letter(2))
    assert not mailbox.post(letter(3))


async def test_letters_come_out_in_order_through_one_getter() -> None:
    mailbox = Mailbox(10)
    letters = [letter(i) for i in range(4)]
    for item in letters:
        mailbox.post(item)
    getter = mailbox.getter()
    assert mailbox.getter() is getter  # the same one until its letter is taken
    await getter
    assert mailbox.has_letter(taken_only=True)
    assert [mailbox.take(), *mailbox.take_more(2)] == letters[:3]
    assert mailbox.has_letter()
    assert not mailbox.has_letter(taken_only=True)


async def test_emptying_out_keeps_the_getters_letter_first() -> None:
    mailbox = Mailbox(10)
    letters = [letter(i) for i in range(3)]
    for item in letters:
        mailbox.post(item)
    await mailbox.getter()
    assert mailbox.empty_out() == letters
    assert not mailbox.has_letter()


async def test_emptying_out_cancels_a_waiting_getter() -> None:
    mailbox = Mailbox(10)
    getter = mailbox.getter()
    assert mailbox.empty_out() == []
    await asyncio.sleep(0)
    assert getter.cancelled()


async def test_a_letter_is_answered_once() -> None:
    item = letter(1)
    item.answer("outboxed")
    item.answer("confirmed")
    assert item.reply.result() == "outboxed"
