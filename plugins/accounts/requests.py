"""`verify-request` and `forgot-password`: ask for a mail; 202 whatever the address.

The answer is made before the address is looked up, from nothing but the validated body, so
it is byte for byte the same, and takes the same time, for a known address and an unknown
one: no caller learns from it who has an account. The look-up, the token and the mail
follow in the background (`Accounts.after_answer`).
"""

from __future__ import annotations

from typing import Final, final

import attrs
from aiohttp import web

from app import BuildContext, Handler, OperationDoc, body_key, json_response, model_ref, request_id_key
from plugins.accounts.config import MailRequestConfig
from plugins.accounts.service import Accounts, accounts_for
from plugins.accounts.tokens import RESET, VERIFY

ACCEPTED: Final = {"detail": "If an account needs it, a mail is on its way to that address."}
_WHAT: Final = {VERIFY: "verification mail", RESET: "password-reset mail"}


@final
@attrs.frozen
class MailRequestStep:
    purpose: str
    accounts: Accounts

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        email = str(request[body_key]["email"])
        work = self.accounts.mail_if_due(self.purpose, email, request.get(request_id_key))
        self.accounts.after_answer(work, _WHAT[self.purpose])
        return json_response(ACCEPTED, status=202)


def build_verify_request(config: MailRequestConfig, ctx: BuildContext) -> MailRequestStep:
    return MailRequestStep(VERIFY, accounts_for(ctx.app))


def build_forgot_password(config: MailRequestConfig, ctx: BuildContext) -> MailRequestStep:
    return MailRequestStep(RESET, accounts_for(ctx.app))


def document_verify_request(config: MailRequestConfig, doc: OperationDoc) -> None:
    doc.respond(202, "Accepted, whether or not the address is known; an active, unverified user "
                "gets a mail with a verification link", schema=model_ref("MailRequested"))


def document_forgot_password(config: MailRequestConfig, doc: OperationDoc) -> None:
    doc.respond(202, "Accepted, whether or not the address is known; an active user gets a mail with "
                "a password-reset link", schema=model_ref("MailRequested"))
