"""A real SMTP server (aiosmtpd) on the test's own event loop, and what it received.

`SmtpInbox` listens on a loopback port (plain, STARTTLS or TLS, with or without AUTH), parses
every mail it accepts, and can be stopped and started again on the same port to play an SMTP
outage. `self_signed` makes the certificate for the TLS tests.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import ssl
import time
import warnings
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LINK = re.compile(r"https?://\S+?#token=[A-Za-z0-9_-]+")


class SmtpInbox:
    """Every mail the server accepted, parsed, in a queue; `refuse` answers RCPT with that code."""

    def __init__(
        self, *, tls: ssl.SSLContext | None = None, starttls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.received: asyncio.Queue[EmailMessage] = asyncio.Queue()
        self.envelopes: list[Envelope] = []
        self.refuse: int | None = None
        self.port = 0
        self._tls = tls
        self._starttls = starttls
        self._credentials = credentials
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        implicit = self._tls if (self._tls is not None and not self._starttls) else None
        self._server = await loop.create_server(self._protocol, "127.0.0.1", self.port, ssl=implicit)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def next(self, within_s: float = 10.0) -> EmailMessage:
        try:
            return await asyncio.wait_for(self.received.get(), within_s)
        except TimeoutError:
            pytest.fail(f"no mail within {within_s} s")

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd sees TLS only when it did the STARTTLS itself; with implicit TLS it warns
            # that AUTH is not held to TLS, while the whole connection is.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return SMTP(
                self,
                hostname="smtp.test",
                tls_context=self._tls if self._starttls else None,
                require_starttls=self._starttls,
                auth_required=self._credentials is not None,
                auth_require_tls=self._starttls,
                authenticator=self._authenticate if self._credentials is not None else None,
                loop=asyncio.get_running_loop(),
            )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self._credentials
        return AuthResult(success=ok)

    # aiosmtpd handler hooks ------------------------------------------------------------------
    async def handle_RCPT(  # aiosmtpd's names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse is not None:
            return f"{self.refuse} mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.envelopes.append(envelope)
        self.received.put_nowait(message)
        return "250 Message accepted"


async def until(condition: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    """Poll `condition` until it holds; fail the test with `what` after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.02)


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML bodies of a mail, with the wire's CRLF line ends as LF."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()).replace("\r\n", "\n"), str(html.get_content()).replace("\r\n", "\n")


def link_in(message: EmailMessage) -> str:
    """The link the plain-text body carries."""
    text, _html = bodies(message)
    found = LINK.search(text)
    assert found is not None, text
    return found.group(0)


def token_in(message: EmailMessage) -> str:
    """The token of the mail's link (it rides in the fragment)."""
    return parse_qs(urlsplit(link_in(message)).fragment)["token"][0]


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and localhost, and the certificate (PEM) to trust it by."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
