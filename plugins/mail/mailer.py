"""`Mailer`: what other plugins use to send mail, one per app.

A plugin whose steps send mail asks for the app's mailer when they are built (`mailer_for`);
the mail plugin's `startup` hook then reads the settings and opens the sender and its queue,
and `shutdown` sends what it can and closes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Final, final

from aiohttp import web

from plugins.mail.message import MailTemplate, OutgoingMail, compose, load_templates
from plugins.mail.queue import FAILED, MailQueue
from plugins.mail.senders import EmlFileSender, Sender, SmtpSender
from plugins.mail.settings import MailSettings

log = logging.getLogger("turnstile.mail")

STOP_DEADLINE_S: Final = 5.0


@final
class Mailer:
    """The app's mail service: `send` puts a rendered mail in the queue and returns at once."""

    def __init__(self) -> None:
        self._settings: MailSettings | None = None
        self._queue: MailQueue | None = None

    @property
    def settings(self) -> MailSettings:
        if self._settings is None:
            msg = "the mailer has not been started"
            raise RuntimeError(msg)
        return self._settings

    @property
    def public_url(self) -> str:
        """Where links in mails point (`PUBLIC_URL`, no trailing slash)."""
        return self.settings.public_url

    @property
    def waiting(self) -> int:
        return 0 if self._queue is None else self._queue.waiting

    def templates(
        self, names: Iterable[str], builtin_dir: Path, variables: frozenset[str]
    ) -> dict[str, MailTemplate]:
        """The templates `names` (built into the caller at `builtin_dir`, overridden from
        `MAIL_TEMPLATES_DIR`). Raises SettingsError naming each bad file."""
        return load_templates(names, builtin_dir, self.settings.templates_dir, variables)

    def send(self, mail: OutgoingMail) -> bool:
        """Queue `mail` for sending; False when it was dropped (logged and counted). Never raises:
        a mail that cannot be sent never fails the request that caused it."""
        if self._queue is None:
            FAILED.labels(reason="error").inc()
            log.error("mail %s dropped: the mailer is not running", mail.kind)
            return False
        try:
            message = compose(mail, self.settings.mail_from)
        except (ValueError, TypeError):  # an address the email package refuses
            FAILED.labels(reason="rejected").inc()
            log.exception("mail %s could not be composed", mail.kind)
            return False
        return self._queue.submit(message, mail.kind)

    def count_unqueued(self, kind: str, why: str) -> None:
        """Count (as `queue_full`) and log a mail its sender gave up on before it could be queued."""
        FAILED.labels(reason="queue_full").inc()
        log.error("mail %s dropped: %s", kind, why)

    def count_unprepared(self, kind: str, why: str) -> None:
        """Count (as `unprepared`) and log a mail that could not be made: what it needed (its
        token's state in Redis, the user's record) did not answer. The user asks again."""
        FAILED.labels(reason="unprepared").inc()
        log.warning("mail %s not sent: %s", kind, why)

    async def start(self, settings: MailSettings) -> None:
        self._settings = settings
        sender: Sender
        if settings.smtp is None:
            sender = EmlFileSender(settings.mail_dir)
            # Announced with the other embedded defaults, in the one start-up line (MailEnv).
            log.info("mail is written to %s as .eml files (set SMTP_URL to send it)", settings.mail_dir)
        else:
            sender = SmtpSender(settings.smtp)
            log.info("mail goes through %s:%d (%s)", settings.smtp.host, settings.smtp.port, settings.smtp.security)
            if settings.smtp.password is not None and settings.smtp.security == "plain":
                log.warning("SMTP_URL is smtp:// with a password: it crosses the network in the clear "
                            "(use smtp+starttls:// or smtps:// unless the server is on this host)")
        self._queue = MailQueue(
            sender, size=settings.queue_size, max_attempts=settings.max_attempts,
            retry_delay_s=settings.retry_delay_s,
        )
        self._queue.start()

    async def stop(self) -> None:
        if self._queue is not None:
            queue, self._queue = self._queue, None
            await queue.stop(STOP_DEADLINE_S)


# Provided by the plugin's setup_app (before any step is built); opened at start-up.
mail_key: Final = web.AppKey("mail", Mailer)


def mailer_for(app: web.Application) -> Mailer:
    """The app's mailer; call it from a step's `build` (at start-up), never per request."""
    return app[mail_key]
