"""`verification-mail`: a new address gets a verification mail, and a changed one makes the user
unverified first.

On a route that creates a user it acts after the answer: a 2xx with an unverified user sends
that user a verification link. On a route that changes user `{id}` (`user = "{id}"`) it also
acts before: a body whose `email` differs from the stored one gets `is_verified: false` added,
so the one write that changes the address also withdraws the proof of the old one; the mail
then goes to the new address. A mail that cannot be sent never fails the request, and a write
the data service saved gets its mail even when a step after it fails or the request is cancelled.
"""

from __future__ import annotations

from typing import Any, final

import attrs
from aiohttp import web

from app import (
    BuildContext,
    Conflict,
    Handler,
    NotFound,
    OperationDoc,
    ProblemError,
    Template,
    TooManyRequests,
    body_key,
    committed_key,
    outcome_unknown_key,
    payload_key,
    request_id_key,
)
from plugins.accounts.config import VerificationMailConfig
from plugins.accounts.service import Accounts, accounts_for
from plugins.accounts.tokens import VERIFY
from plugins.users import normalise_email


@final
@attrs.frozen
class VerificationMailStep:
    accounts: Accounts
    user: Template | None  # None on a route that creates a user

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        changes_email = self.user is not None and await self._changes_email(request, self.user)
        address = (request.get(body_key) or {}).get("email")
        spent: str | None = None
        if (self.user is None or changes_email) and isinstance(address, str):  # a registration, or a real change
            spent = normalise_email(address)
            retry_after_s = await self.accounts.verification_mails.spend(spent)
            if retry_after_s is not None:
                await self._conflict_first(request, spent)
                msg = "Too many verification mails went to that mailbox lately; try again later."
                raise TooManyRequests(msg, retry_after_s=retry_after_s)
        if changes_email:
            body: dict[str, Any] = request[body_key].copy()
            body["is_verified"] = False
            request[body_key] = body
        sends = self.user is None or changes_email
        try:
            response = await handler(request)
        except BaseException:  # failed or cancelled: a write already saved still gets its mail
            if sends:
                self._mail(request.get(committed_key), changes_email)
            await self._unspend(request, spent)
            raise
        if sends:
            self._mail(response if 200 <= response.status < 300 else request.get(committed_key), changes_email)
        if not 200 <= response.status < 300:
            await self._unspend(request, spent)
        return response

    async def _conflict_first(self, request: web.Request, address: str) -> None:
        """409 instead of 429 when `address` has an account: the write would have been refused
        anyway, and one after another such requests get 409 (concurrent registrations of one
        address spent the budget before the first 409 came back, and the rest got 429)."""
        try:
            holder = await self.accounts.user_by_email(address, request.get(request_id_key))
        except ProblemError:
            return  # the data service cannot tell: the budget's answer stands
        if holder is not None:
            msg = "Another user already has this email."
            raise Conflict(msg)

    async def _unspend(self, request: web.Request, spent: str | None) -> None:
        """Nothing saved, no mail: the budget spent for it goes back (a duplicate registration's
        409 spent it, and three of them kept the owner's mailbox from any mail for ten minutes)."""
        if spent is not None and request.get(committed_key) is None and request.get(outcome_unknown_key) is None:
            await self.accounts.verification_mails.give_back(spent)

    def _mail(self, answer: web.StreamResponse | None, changes_email: bool) -> None:
        """A verification mail to the user the saved write answered with, when it is unverified;
        a changed address first voids what was mailed before it. Queued at once (no await): a
        cancellation cannot come between the write and the mail."""
        user = None if answer is None else answer.get(payload_key)
        if isinstance(user, dict) and user.get("is_verified") is False and "id" in user and "email" in user:
            work = self._void_then_mail(user) if changes_email else self.accounts.mail_token(VERIFY, user)
            self.accounts.after_answer(work, "verification mail")

    async def _void_then_mail(self, user: dict[str, Any]) -> None:
        # The old address's links already fail while the address differs; voided, they stay
        # dead if it is changed back. Before the new mail's token, which must outlive it.
        await self.accounts.void_mail_tokens(int(user["id"]))
        await self.accounts.mail_token(VERIFY, user)

    async def _changes_email(self, request: web.Request, user: Template) -> bool:
        body: dict[str, Any] | None = request.get(body_key)
        email = None if body is None else body.get("email")
        if not isinstance(email, str):
            return False
        try:
            reply = await self.accounts.data.request(
                "GET", f"/api/v1/users/{user.for_request(request)}", request_id=request.get(request_id_key)
            )
        except NotFound:
            return False  # the write itself answers 404
        stored = reply.data.get("email") if isinstance(reply.data, dict) else None
        return not isinstance(stored, str) or normalise_email(stored) != normalise_email(email)


def build(config: VerificationMailConfig, ctx: BuildContext) -> VerificationMailStep:
    user = Template(config.user, quote=True, safe=ctx.pipeline.route.int_params) if config.user else None
    return VerificationMailStep(accounts_for(ctx.app), user)


def document(config: VerificationMailConfig, doc: OperationDoc) -> None:
    if config.user:
        doc.pipeline_notes.append("A changed `email` makes the user unverified and sends a verification "
                                  "mail to the new address (at most 3 such mails a mailbox, the address "
                                  "without its +tag, in 10 minutes: beyond, the change is a 429 with "
                                  "Retry-After).")
    else:
        doc.pipeline_notes.append("The new user is unverified and gets a mail with a verification link (at "
                                  "most 3 such mails a mailbox, the address without its +tag, in 10 minutes: "
                                  "beyond, a 429 with Retry-After).")
    doc.problem(429, "Too many verification mails to that mailbox lately", headers={"Retry-After": "Seconds to wait."})
