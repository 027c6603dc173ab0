"""The built-in `accounts` plugin: email verification and password reset through mailed links.

Step types: `verify-request` and `forgot-password` (terminal: 202 whatever the address, the
mail follows), `verify-email` and `reset-password` (terminal: spend a mailed token and change
the user), `verification-mail` (wrapper: a new or changed address gets a verification mail,
and a changed one makes the user unverified). Models: EmailRequest, VerifyRequest,
ResetPasswordRequest, MailRequested. Tokens: plugins/accounts/tokens.py; settings (token
lifetimes): plugins/accounts/settings.py; mail templates: plugins/accounts/templates/.

- startup: reads the settings and the mail templates (a deployment's overrides checked here).
- shutdown: lets the work that follows answers finish, briefly, before the mailer drains.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app import PluginRoute, Resources, StepKind, StepType, hookimpl, plugin_settings
from plugins.accounts import email_change, link_pages, redeem, requests
from plugins.accounts.config import MailRequestConfig, RedeemConfig, VerificationMailConfig
from plugins.accounts.env import AccountsEnv
from plugins.accounts.models import MODELS
from plugins.accounts.service import accounts_key, make_accounts
from plugins.auth.services import services_key
from plugins.mail.mailer import mail_key


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="verify-request", config_cls=MailRequestConfig, build=requests.build_verify_request,
                 kind=StepKind.TERMINAL, document=requests.document_verify_request),
        StepType(name="forgot-password", config_cls=MailRequestConfig, build=requests.build_forgot_password,
                 kind=StepKind.TERMINAL, document=requests.document_forgot_password),
        StepType(name="verify-email", config_cls=RedeemConfig, build=redeem.build_verify,
                 kind=StepKind.TERMINAL, document=redeem.document_verify, check=redeem.check),
        StepType(name="reset-password", config_cls=RedeemConfig, build=redeem.build_reset,
                 kind=StepKind.TERMINAL, document=redeem.document_reset, check=redeem.check),
        StepType(name="verification-mail", config_cls=VerificationMailConfig, build=email_change.build,
                 kind=StepKind.WRAPPER, document=email_change.document),
    ]


@hookimpl
def register_models() -> list[type[Any]]:
    return list(MODELS)


@hookimpl
def register_routes() -> list[PluginRoute]:
    return list(link_pages.ROUTES)


# Last at start-up (the mailer, whose templates it reads, is started by then) and so first at
# shutdown (its mails are queued before the mailer drains).
@hookimpl
def register_settings() -> list[type[Any]]:
    return [AccountsEnv]


@hookimpl(trylast=True)
def setup_app(app: web.Application, resources: Resources) -> None:
    # After auth's and mail's (trylast): it holds their objects. Without them (disabled)
    # there are no account flows, and a pipeline naming one stops at its build.
    if services_key in app and mail_key in app:
        resources.provide(accounts_key, make_accounts(app), description="mail tokens and the account flows")


@hookimpl(trylast=True)
async def startup(app: web.Application) -> None:
    if accounts_key in app:
        await app[accounts_key].start(plugin_settings(app, AccountsEnv).settings())


@hookimpl(trylast=True)
async def shutdown(app: web.Application) -> None:
    if accounts_key in app:
        await app[accounts_key].stop()
