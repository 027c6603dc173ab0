"""Delivery through a real SMTP server (aiosmtpd): plain, STARTTLS and TLS with AUTH, retries
with backoff while the server is down, no retry for a refusal, a bounded queue, the `.eml`
stand-in, and the counters of each outcome."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path

import attrs
import pytest
from prometheus_client import REGISTRY

from app import current_request_id
from app.logs import RequestIdFilter
from plugins.mail.message import OutgoingMail, compose
from plugins.mail.queue import MailQueue
from plugins.mail.senders import EmlFileSender, SmtpSender
from plugins.mail.settings import SmtpServer
from tests.smtp import SmtpInbox, bodies, self_signed, until

MAIL = OutgoingMail(
    to="ann@example.com", subject="Verify your email address", text="Open https://app.test/v#token=abc",
    html='<a href="https://app.test/v#token=abc">Verify</a>', kind="verify-email",
)
SENDER = "Shop <no-reply@shop.test>"


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def inbox() -> AsyncIterator[SmtpInbox]:
    server = SmtpInbox()
    await server.start()
    yield server
    await server.stop()


def smtp_queue(server: SmtpServer, **options: float) -> MailQueue:
    settings = {"size": 10, "max_attempts": 5, "retry_delay_s": 0.05, **options}
    return MailQueue(SmtpSender(server), size=int(settings["size"]), max_attempts=int(settings["max_attempts"]),
                     retry_delay_s=settings["retry_delay_s"], jitter=lambda: 0.5)


async def test_a_mail_goes_through_smtp_with_a_text_and_an_html_body(inbox: SmtpInbox) -> None:
    sent_before = counter("turnstile_mail_sent_total")
    queue = smtp_queue(SmtpServer(host="127.0.0.1", port=inbox.port, security="plain"))
    queue.start()
    assert queue.submit(compose(MAIL, SENDER), MAIL.kind)
    message = await inbox.next()
    await queue.stop(1.0)
    assert (message["From"], message["To"], message["Subject"]) == (SENDER, MAIL.to, MAIL.subject)
    assert message["Message-ID"].endswith("@shop.test>")
    assert bodies(message) == (MAIL.text + "\n", MAIL.html + "\n")
    assert counter("turnstile_mail_sent_total") == sent_before + 1


@pytest.mark.parametrize("address", [
    "=?utf-8?q?admin?=@example.com", "=?utf-8?q?a=2C_b?=@example.com",
    "someone,attacker@evil.example",  # registered before such addresses were refused: a list of two
])
def test_an_address_a_mail_header_would_read_as_another_is_never_composed(address: str) -> None:
    # The envelope comes from the To header, which decodes an encoded word: the mail of
    # "=?utf-8?q?admin?=@example.com" went to admin@example.com's mailbox.
    with pytest.raises(ValueError, match="reads as"):
        compose(attrs.evolve(MAIL, to=address), SENDER)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_starttls_and_tls_with_a_login(security: str, tmp_path: Path) -> None:
    context, cert = self_signed(tmp_path)
    server = SmtpInbox(tls=context, starttls=security == "starttls", credentials=("relay", "s3cret-pass"))
    await server.start()
    try:
        queue = smtp_queue(SmtpServer(host="127.0.0.1", port=server.port, security=security,
                                      username="relay", password="s3cret-pass", ca_file=cert))
        queue.start()
        queue.submit(compose(MAIL, SENDER), MAIL.kind)
        message = await server.next()
        await queue.stop(1.0)
    finally:
        await server.stop()
    assert message["To"] == MAIL.to
    assert server.envelopes[0].rcpt_tos == [MAIL.to]


async def test_an_unreachable_server_is_retried_with_backoff_until_it_is_back(inbox: SmtpInbox) -> None:
    await inbox.stop()  # the port stays known: the server comes back on it
    retries_before = counter("turnstile_mail_retries_total")
    queue = smtp_queue(SmtpServer(host="127.0.0.1", port=inbox.port, security="plain"), retry_delay_s=0.1,
                       max_attempts=20)
    queue.start()
    queue.submit(compose(MAIL, SENDER), MAIL.kind)
    await until(lambda: counter("turnstile_mail_retries_total") >= retries_before + 2, "two retries")
    assert queue.waiting == 1
    await inbox.start()
    message = await inbox.next()
    await queue.stop(1.0)
    assert message["Subject"] == MAIL.subject
    assert queue.waiting == 0


async def test_a_refused_recipient_is_given_up_at_once_and_a_busy_one_retried(inbox: SmtpInbox) -> None:
    server = SmtpServer(host="127.0.0.1", port=inbox.port, security="plain")
    rejected_before = counter("turnstile_mail_failed_total", reason="rejected")
    retries_before = counter("turnstile_mail_retries_total")
    inbox.refuse = 550
    queue = smtp_queue(server)
    queue.start()
    queue.submit(compose(MAIL, SENDER), MAIL.kind)
    await until(lambda: counter("turnstile_mail_failed_total", reason="rejected") > rejected_before, "a rejection")
    assert counter("turnstile_mail_retries_total") == retries_before
    inbox.refuse = 451  # "try again later"
    queue.submit(compose(MAIL, SENDER), MAIL.kind)
    await until(lambda: counter("turnstile_mail_retries_total") > retries_before, "a retry")
    inbox.refuse = None
    assert (await inbox.next())["To"] == MAIL.to
    await queue.stop(1.0)


async def test_attempts_run_out_and_the_mail_is_counted_as_failed(inbox: SmtpInbox) -> None:
    await inbox.stop()
    exhausted_before = counter("turnstile_mail_failed_total", reason="attempts_exhausted")
    queue = smtp_queue(SmtpServer(host="127.0.0.1", port=inbox.port, security="plain"), max_attempts=3)
    queue.start()
    queue.submit(compose(MAIL, SENDER), MAIL.kind)
    await until(lambda: counter("turnstile_mail_failed_total", reason="attempts_exhausted") > exhausted_before,
                "the attempts to run out")
    assert queue.waiting == 0
    await queue.stop(1.0)


async def test_the_queue_is_bounded_and_shutdown_counts_what_is_left(inbox: SmtpInbox) -> None:
    await inbox.stop()
    full_before = counter("turnstile_mail_failed_total", reason="queue_full")
    left_before = counter("turnstile_mail_failed_total", reason="shutdown")
    queue = smtp_queue(SmtpServer(host="127.0.0.1", port=inbox.port, security="plain"), size=2, retry_delay_s=60)
    queue.start()
    assert [queue.submit(compose(MAIL, SENDER), MAIL.kind) for _ in range(3)] == [True, True, False]
    assert counter("turnstile_mail_failed_total", reason="queue_full") == full_before + 1
    await queue.stop(0.2)
    assert counter("turnstile_mail_failed_total", reason="shutdown") == left_before + 2
    assert not queue.submit(compose(MAIL, SENDER), MAIL.kind)  # closed


async def test_the_file_stand_in_writes_an_eml_and_logs_neither_link_nor_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnstile.mail")
    queue = MailQueue(EmlFileSender(tmp_path / "mail"), size=10, max_attempts=1, retry_delay_s=1)
    queue.start()
    queue.submit(compose(MAIL, SENDER), MAIL.kind)
    await queue.stop(2.0)
    [eml] = (tmp_path / "mail").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["To"] == MAIL.to
    assert eml.stat().st_mode & 0o777 == 0o600
    announced = [r.getMessage() for r in caplog.records if r.name == "turnstile.mail"]
    assert any(str(eml) in line for line in announced)
    assert not any("token" in line or "https://" in line or MAIL.to in line for line in announced)


def test_a_long_link_stays_whole_in_the_raw_message() -> None:
    link = "https://accounts.example.com:8443/reset-password#token=" + "A1b2_-" * 8
    mail = OutgoingMail(to=MAIL.to, subject="Reset", text=f"Open {link}\n", html=f'<a href="{link}">x</a>',
                        kind="reset-password")
    raw = compose(mail, SENDER).as_bytes().decode()
    assert raw.count(link) == 2  # in the text and in the HTML, neither folded nor escaped
    accented = compose(attrs.evolve(mail, text=f"Öffnen: {link}\n"), SENDER)
    assert accented.get_body(("plain",)).get_content().strip() == f"Öffnen: {link}"  # type: ignore[union-attr]


async def test_the_lines_about_a_mail_carry_the_id_of_the_request_that_caused_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())  # as the service's handler does
    caplog.set_level(logging.INFO, logger="turnstile.mail")
    queue = MailQueue(EmlFileSender(tmp_path / "mail"), size=10, max_attempts=1, retry_delay_s=1)
    queue.start()
    request = current_request_id.set("rid-register-1")
    try:
        queue.submit(compose(MAIL, SENDER), MAIL.kind)
    finally:
        current_request_id.reset(request)
    await queue.stop(2.0)
    (written,) = [r for r in caplog.records if "written to" in r.getMessage()]
    assert written.request_id == "rid-register-1"  # type: ignore[attr-defined]  # set by the filter
