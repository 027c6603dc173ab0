"""The mail plugin's variables as plugin-owned settings (`register_settings`), so they are
read with the core's, listed by `turnstile plugins` and validated in the one start-up report.
`load_mail_settings` (plugins/mail/settings.py) turns them into what the sender uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import attrs

from app import Settings, SettingsError, setting
from plugins.mail.settings import load_mail_settings


@attrs.frozen(kw_only=True)
class MailEnv:
    """SMTP_*, MAIL_* and PUBLIC_URL (see plugins/mail/settings.py for each one's rules)."""

    env_prefix: ClassVar[str] = "MAIL_"

    smtp_url: str | None = setting(default=None, env="SMTP_URL", secret=True,
                                   description="smtp://, smtp+starttls:// or smtps:// server (none: .eml files)")
    smtp_password_file: str | None = setting(default=None, env="SMTP_PASSWORD_FILE",
                                             description="file holding the SMTP password, when not in SMTP_URL")
    smtp_ca_file: str | None = setting(default=None, env="SMTP_CA_FILE", description="CA file for the SMTP server")
    smtp_timeout_s: str | None = setting(default=None, env="SMTP_TIMEOUT_S", description="seconds per connection (10)")
    mail_from: str | None = setting(default=None, env="MAIL_FROM", description="sender address")
    public_url: str | None = setting(default=None, env="PUBLIC_URL", description="where links in mails point")
    templates_dir: str | None = setting(default=None, description="directory of templates replacing the built-in ones")
    queue_size: str | None = setting(default=None, description="mails waiting at most (1000)")
    max_attempts: str | None = setting(default=None, description="sends of one mail at most (8)")
    retry_delay_s: str | None = setting(default=None, description="wait after the first failed send (2 s, doubling)")

    def embedded_defaults(self) -> list[str]:
        """For the one start-up line that names every embedded default in use (contract §3)."""
        return [] if self.smtp_url else ["mail written as .eml files to mail/ in TURNSTILE_VAR_DIR (no SMTP_URL)"]

    def environ(self) -> dict[str, str]:
        """The variables that were set, by name, for `load_mail_settings`."""
        names = {
            "smtp_url": "SMTP_URL", "smtp_password_file": "SMTP_PASSWORD_FILE", "smtp_ca_file": "SMTP_CA_FILE",
            "smtp_timeout_s": "SMTP_TIMEOUT_S", "mail_from": "MAIL_FROM", "public_url": "PUBLIC_URL",
            "templates_dir": "MAIL_TEMPLATES_DIR", "queue_size": "MAIL_QUEUE_SIZE",
            "max_attempts": "MAIL_MAX_ATTEMPTS", "retry_delay_s": "MAIL_RETRY_DELAY_S",
        }
        return {names[name]: value for name, value in attrs.asdict(self).items() if value is not None}

    def check(self, production: bool) -> Iterable[str]:
        # The same rules the plugin applies at start-up, reported with the core's problems.
        core = attrs.evolve(Settings(), env="production" if production else "development")
        try:
            load_mail_settings(self.environ(), core)
        except SettingsError as exc:
            return exc.problems
        return []
