"""`user.verified` and `user.password_reset` on the real RabbitMQ (contract §9, §13): published
by the event-emit step like every user event, with the contract's body and properties, the
user as data, and never the token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.accounts import (
    RESET,
    VERIFY,
    inbox_fixture,  # noqa: F401  # the `inbox` fixture
    reset_token,
    verification_token,
)
from tests.integration.amqp_capture import body_of, capture, next_message, remove_test_topology, wait_connected
from tests.integration.conftest import StackFactory, login, register
from tests.integration.test_events import assert_contract_event, rid
from tests.smtp import SmtpInbox


@pytest.fixture
async def broker(amqp_url: str, unique: str) -> AsyncIterator[str]:
    """The broker URL; request it before `stack` so its cleanup runs after the service stopped."""
    yield amqp_url
    await remove_test_topology(amqp_url, unique)


async def test_verification_and_reset_publish_contract_events_without_the_token(
    inbox: SmtpInbox, broker: str, stack: StackFactory, redis_db: str, unique: str
) -> None:
    client = await stack(redis_url=redis_db, rabbitmq_url=broker)
    await wait_connected(client)
    user = await register(client, "ann@example.com")
    verify = await verification_token(inbox, "ann@example.com")
    reset = await reset_token(client, inbox, "ann@example.com")
    async with capture(broker, f"test.{unique}", routing_key="user.*") as received:
        verified_rid, reset_rid = rid("verify"), rid("reset")
        resp = await client.post(VERIFY, json={"token": verify}, headers=verified_rid)
        assert resp.status == 200
        verified_user = await resp.json()
        resp = await client.post(RESET, json={"token": reset, "password": "a-new-password-2"}, headers=reset_rid)
        assert resp.status == 204
        first, second = await next_message(received), await next_message(received)
    assert_contract_event(first, "user.verified", verified_rid["X-Request-ID"], verified_user)
    # The reset event carries the user as the reset left it (a new updated_at).
    changed = {**verified_user, "updated_at": body_of(second)["data"]["updated_at"]}
    assert_contract_event(second, "user.password_reset", reset_rid["X-Request-ID"], changed)
    assert changed["id"] == user["id"]
    for message in (first, second):
        assert verify not in message.body.decode()
        assert reset not in message.body.decode()
    await login(client, "ann@example.com", "a-new-password-2")
