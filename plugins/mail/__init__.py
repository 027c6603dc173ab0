"""The built-in `mail` plugin: mail through SMTP (aiosmtplib), or `.eml` files in development.

Other plugins send with `mailer_for(app).send(template.render(to, values))`: the mail goes
into a bounded queue and the request goes on; workers hand it to the SMTP server, retrying
with backoff, and count what was sent, retried and given up on (`turnstile_mail_*`).
Templates (`MailTemplate`) are files a deployment may replace (`MAIL_TEMPLATES_DIR`).
Settings: plugins/mail/settings.py.

- setup_app: provides the mailer (`mail_key`) before any step is built.
- startup: reads the settings (one message per bad variable) and opens the sender and its
  queue.
- shutdown: sends what is queued for a few seconds, then closes.
"""

from __future__ import annotations

from aiohttp import web

from app import Resources, hookimpl, plugin_settings, settings_key
from plugins.mail.env import MailEnv
from plugins.mail.mailer import Mailer, mail_key, mailer_for
from plugins.mail.message import MailTemplate, OutgoingMail
from plugins.mail.settings import MailSettings, load_mail_settings

__all__ = ["MailSettings", "MailTemplate", "Mailer", "OutgoingMail", "mailer_for"]


@hookimpl
def register_settings() -> list[type]:
    return [MailEnv]


@hookimpl
def setup_app(app: web.Application, resources: Resources) -> None:
    resources.provide(mail_key, Mailer(), description="mail: SMTP (SMTP_URL) or .eml files, a bounded queue")


@hookimpl
async def startup(app: web.Application) -> None:
    env = plugin_settings(app, MailEnv)
    await app[mail_key].start(load_mail_settings(env.environ(), app[settings_key]))


@hookimpl
async def shutdown(app: web.Application) -> None:
    mailer = app.get(mail_key)
    if mailer is not None:
        await mailer.stop()
