"""What the account tests share: the routes, a real SMTP server the service is pointed at, and
reading the mails, the tokens in them and the events the service wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Client
from tests.smtp import SmtpInbox, token_in

VERIFY_REQUEST = "/api/v1/auth/verify/request"
VERIFY = "/api/v1/auth/verify"
FORGOT = "/api/v1/auth/forgot-password"
RESET = "/api/v1/auth/reset-password"
SESSIONS = "/api/v1/auth/sessions"
ME = "/api/v1/auth/me"
PASSWORD = "correct-horse-1"
PUBLIC_URL = "https://app.turnstile.test"


@pytest.fixture(name="inbox")
async def inbox_fixture(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SmtpInbox]:
    """A real SMTP server the service sends to (request it before `stack`: it must outlive the app)."""
    server = SmtpInbox()
    await server.start()
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{server.port}")
    monkeypatch.setenv("MAIL_FROM", "Turnstile <no-reply@turnstile.test>")
    monkeypatch.setenv("PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("MAIL_RETRY_DELAY_S", "0.1")
    yield server
    await server.stop()


async def mail_to(inbox: SmtpInbox, address: str, subject: str) -> EmailMessage:
    message = await inbox.next()
    assert (message["To"], message["Subject"]) == (address, subject)
    return message


async def verification_token(inbox: SmtpInbox, address: str) -> str:
    return token_in(await mail_to(inbox, address, "Verify your email address"))


async def reset_token(client: Client, inbox: SmtpInbox, address: str) -> str:
    resp = await client.post(FORGOT, json={"email": address})
    assert resp.status == 202, await resp.text()
    return token_in(await mail_to(inbox, address, "Reset your password"))


def events_written(var_dir: Path) -> list[dict[str, Any]]:
    """The events the embedded publisher wrote (RABBITMQ_URL unset)."""
    path = var_dir / "events.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]
