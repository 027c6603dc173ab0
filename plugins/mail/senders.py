"""Who hands a composed message over: an SMTP server (aiosmtplib), or a directory of `.eml` files.

A sender raises `SendFailed` and says whether trying again may help: a connection refused, a
timeout or a 4xx answer is transient; a 5xx answer (a recipient refused, a message rejected)
is not, and trying again would only repeat it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol, final

import aiosmtplib

from plugins.mail.settings import SmtpServer

log = logging.getLogger("turnstile.mail")


class SendFailed(Exception):
    """The message was not handed over; `transient`: a later attempt may succeed."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


class Sender(Protocol):
    """Hands one message over, or raises `SendFailed`."""

    name: str

    async def send(self, message: EmailMessage) -> None: ...


@final
class SmtpSender:
    """One SMTP connection per message: mail is rare enough that a pool would only hold sockets open."""

    name = "smtp"

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self._tls = ssl.create_default_context(cafile=str(server.ca_file) if server.ca_file else None)

    async def send(self, message: EmailMessage) -> None:
        server = self.server
        try:
            await aiosmtplib.send(
                message,
                # The one address the mail is for, as one recipient: left to itself aiosmtplib
                # would parse the To header as a list, where a comma names a second mailbox.
                recipients=[str(message["To"])],
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.security == "tls",
                # "plain" never upgrades, so what the URL says is what happens on the wire.
                start_tls=server.security == "starttls",
                tls_context=self._tls if server.security != "plain" else None,
                timeout=server.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(f"the server answered {exc.code}", transient=400 <= exc.code < 500) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({refusal.code for refusal in exc.recipients})
            raise SendFailed(f"the recipient was refused ({codes})", transient=all(400 <= c < 500 for c in codes)) \
                from None
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. no STARTTLS: the settings, not the moment
            raise SendFailed(f"the server does not support it: {exc}", transient=False) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailed(f"{type(exc).__name__}: {exc}", transient=True) from None


@final
class EmlFileSender:
    """The embedded stand-in: each message is written to `directory` as an `.eml` file.

    The log names the file, the recipient and the subject, never the body: the link in it is
    as good as the account's password for the next hour.
    """

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        try:
            await asyncio.to_thread(self._write, path, message.as_bytes())
        except OSError as exc:
            raise SendFailed(f"cannot write {path}: {exc.strerror}", transient=True) from None
        # Neither the link nor the address: a log is no place for a user's mailbox (the file has both).
        log.info("mail %r written to %s (its address and link are in the file only)", message["Subject"], path)

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then renamed: a reader never sees half a mail.
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        partial.chmod(0o600)
        partial.replace(path)
