"""`verify-email` and `reset-password`: spend a token from a mail and change the user.

A token is spent the moment it is presented (atomically, on every instance), then checked
against the account as it is now: it must name an active user whose email is still the one
the mail went to, who (for verification) is not verified yet or (for a reset) still has the
password the token was issued for. Anything else is one 400 that says nothing about which
rule failed. When the data service cannot be asked, the token is given back, so the link
still works once it is reachable again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final, final

import attrs
from aiohttp import web

from app import (
    BadGateway,
    BuildContext,
    CheckContext,
    Handler,
    NotFound,
    OperationDoc,
    ProblemError,
    RedisUnavailable,
    ServiceUnavailable,
    body_key,
    committed_at_key,
    committed_key,
    complete_despite_cancellation,
    json_response,
    model_ref,
    payload_key,
    request_id_key,
    utc_now_rfc3339,
)
from plugins.accounts.answers import CacheKeys, PublicUser, cache_keys, public_user
from plugins.accounts.config import RedeemConfig
from plugins.accounts.service import Accounts, accounts_for
from plugins.accounts.tokens import RESET, VERIFY, TokenRecord, password_fingerprint
from plugins.data_fetch.settle import Settled, settle
from plugins.users import normalise_email, user_record

log = logging.getLogger("turnstile.accounts")

BAD_TOKEN: Final = "The link is invalid, has expired or was already used; ask for a new one."  # noqa: S105  # a message
STATE_RETRY_AFTER_S: Final = 2


class InvalidToken(ProblemError):
    """400: a token from a mail that cannot be used (unknown, expired, spent, or outdated)."""

    status, title, slug = 400, "Bad Request", "invalid-token"


@contextlib.contextmanager
def _token_state() -> Iterator[None]:
    try:
        yield
    except RedisUnavailable:
        msg = "Token state is unavailable; try again shortly."
        raise ServiceUnavailable(msg, retry_after_s=STATE_RETRY_AFTER_S) from None


@final
@attrs.frozen
class Redeemer:
    """Spends a token and reads the account it names, as both steps do."""

    accounts: Accounts

    async def redeem(self, request: web.Request, purpose: str) -> tuple[TokenRecord, dict[str, Any]]:
        """The spent token's record and the user's stored record; InvalidToken when either is wrong."""
        token = str(request[body_key]["token"])
        with _token_state():
            record = await self.accounts.tokens.redeem(purpose, token)
        if record is None:
            raise InvalidToken(BAD_TOKEN)
        return record, await self.account(request, record)

    async def account(self, request: web.Request, record: TokenRecord) -> dict[str, Any]:
        """The user's stored record, read now; InvalidToken unless it is active and still has the
        address the mail went to. When the data service cannot tell, the link works again."""
        token = str(request[body_key]["token"])
        try:
            reply = await self.accounts.data.request(
                "GET", f"/api/v1/users/{record.user_id}", request_id=request.get(request_id_key)
            )
        except NotFound:
            raise InvalidToken(BAD_TOKEN) from None
        except ProblemError:
            with contextlib.suppress(RedisUnavailable):
                await self.accounts.tokens.give_back(token, record)
            raise
        try:
            user = user_record(reply.data, with_hash=True)
        except BadGateway:  # the data service's fault: the link stays usable
            with contextlib.suppress(RedisUnavailable):
                await self.accounts.tokens.give_back(token, record)
            raise
        if not (user["is_active"] and self.sent_to(request, record, user)):
            raise InvalidToken(BAD_TOKEN)
        return user

    @staticmethod
    def sent_to(request: web.Request, record: TokenRecord, user: dict[str, Any]) -> bool:
        """Whether `user`'s address is the one the token's mail went to."""
        return record.sent_to(str(request[body_key]["token"]), normalise_email(str(user.get("email", ""))))

    async def give_back(self, request: web.Request, record: TokenRecord) -> None:
        """The link works again (the change could not be made, or not be known to be)."""
        with contextlib.suppress(RedisUnavailable):
            await self.accounts.tokens.give_back(str(request[body_key]["token"]), record)

    async def patch(self, request: web.Request, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """The user's stored record once `changes` are written: the data service's answer or, when
        that is no whole record (none, `{}`, the changed fields alone) or was lost, the record
        read back. MaybeSaved when neither shows the change: it may or may not have been made."""
        path = f"/api/v1/users/{user_id}"
        request_id = request.get(request_id_key)
        lost: ProblemError | None = None
        try:
            reply = await self.accounts.data.request("PATCH", path, json=changes, request_id=request_id)
        except ProblemError as exc:
            if not exc.outcome_unknown:
                raise
            lost = exc
        else:
            request[committed_at_key] = utc_now_rfc3339()  # the change's time, for its event
            if _whole_record(reply.data):
                return reply.data  # type: ignore[no-any-return]  # checked: a user record
        # Read back as data-fetch reads its writes back (logged and counted there).
        settled, back = await settle(self.accounts.data, "PATCH", path, changes, request_id)
        if settled is Settled.APPLIED and back is not None and _whole_record(back.data):
            request.setdefault(committed_at_key, utc_now_rfc3339())
            return back.data  # type: ignore[no-any-return]  # checked: a user record
        raise MaybeSaved(lost or BadGateway("the data service gave an answer this service could not use"))


class MaybeSaved(Exception):  # a state, not a failure of ours
    """A change the data service may have made: its answer was lost or unusable, and reading the
    record back did not show it. `problem` is the answer to give."""

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _whole_record(data: Any) -> bool:
    try:
        user_record(data, with_hash=True)
    except BadGateway:
        return False
    return True


@final
@attrs.frozen
class VerifyEmailStep:
    """200 with the user, now verified."""

    redeemer: Redeemer
    answer: PublicUser
    cache: CacheKeys

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record, user = await self.redeemer.redeem(request, VERIFY)
        if user.get("is_verified") is not False:
            raise InvalidToken(BAD_TOKEN)
        try:
            changed = await self.redeemer.patch(request, record.user_id, {"is_verified": True})
        except MaybeSaved as exc:
            # Perhaps verified: the cached copy may be old now, and the link works again.
            await self.cache.invalidate(user)
            await self.redeemer.give_back(request, record)
            raise exc.problem from None
        # Saved: what follows happens even if the request is cancelled now, or an unproven address
        # could stay verified and the cache stale.
        return await complete_despite_cancellation(self._settle(request, record, changed))

    async def _settle(self, request: web.Request, record: TokenRecord, changed: dict[str, Any]) -> web.Response:
        """The answer once the address is proven still the user's. When it changed between the
        read and the write, the flag is taken back (a 400, and no change to announce). The cache
        forgets the user either way."""
        proven = self.redeemer.sent_to(request, record, changed)
        if not proven:
            await self.redeemer.patch(request, record.user_id, {"is_verified": False})
        await self.cache.invalidate(changed)
        if not proven:
            raise InvalidToken(BAD_TOKEN)
        data = await self.answer(request, changed)
        response = json_response(data)
        response[payload_key] = data
        request[committed_key] = response  # the event goes out even if a step after this one fails
        return response


@final
@attrs.frozen
class ResetPasswordStep:
    """204; every session of the user ends (the `user.password_reset` event carries the user)."""

    redeemer: Redeemer
    answer: PublicUser
    cache: CacheKeys

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record, user = await self.redeemer.redeem(request, RESET)
        _check_unchanged(record, user)
        auth = self.redeemer.accounts.auth
        password_hash = await auth.hasher.hash(str(request[body_key]["password"]))
        # The hash took a tenth of a second: the account is read again, so that an address or a
        # password changed meanwhile wins over this link (it overwrote a new password, or reset
        # the password of an address the link's mail no longer names).
        user = await self.redeemer.account(request, record)
        _check_unchanged(record, user)
        try:
            changed = await self.redeemer.patch(request, record.user_id, {"password_hash": password_hash})
        except MaybeSaved as exc:
            # The password may be the new one, so the sessions a reset ends end all the same (fail
            # closed); the link works again, for a password that was not changed after all.
            await complete_despite_cancellation(self._end_sessions(record.user_id, user))
            await self.redeemer.give_back(request, record)
            raise exc.problem from None
        if not self.redeemer.sent_to(request, record, changed):
            # The address changed between the read and the write: the link no longer proves the
            # account. The password goes back (unless another change followed this one) and the
            # sessions end all the same.
            await complete_despite_cancellation(self._undo(request, record.user_id, user, password_hash, changed))
            raise InvalidToken(BAD_TOKEN)
        # Saved: the sessions end even if the request is cancelled now (see
        # `complete_despite_cancellation`), and the change is announced even if they cannot.
        response = web.Response(status=204)
        await complete_despite_cancellation(self._settle(request, response, record.user_id, changed))
        return response

    async def _settle(self, request: web.Request, response: web.Response, user_id: int,
                      changed: dict[str, Any]) -> None:
        try:
            # No body, but the event-emit step around this one describes the user; it publishes
            # the event of a committed change (`committed_key`) even when ending sessions fails.
            response[payload_key] = await self.answer(request, changed)
            request[committed_key] = response
        finally:
            await self._end_sessions(user_id, changed)

    async def _undo(self, request: web.Request, user_id: int, before: dict[str, Any], written: str,
                    changed: dict[str, Any]) -> None:
        try:
            if changed.get("password_hash") == written:
                await self.redeemer.patch(request, user_id, {"password_hash": before["password_hash"]})
        finally:
            await self._end_sessions(user_id, changed)

    async def _end_sessions(self, user_id: int, changed: dict[str, Any]) -> None:
        await self.cache.invalidate(changed)
        try:
            await self.redeemer.accounts.auth.revocations.revoke(user_id)
        except Exception:
            log.exception("password of user %s reset, but its sessions could not be ended", user_id)
            msg = ("The password was changed, but the account's sessions could not all be ended; "
                   "ask for another reset to end them.")
            raise ServiceUnavailable(msg, retry_after_s=STATE_RETRY_AFTER_S) from None


def _check_unchanged(record: TokenRecord, user: dict[str, Any]) -> None:
    """A reset link is for the password it was issued against: changed since, it is spent."""
    if password_fingerprint(str(user.get("password_hash", ""))) != record.state:
        raise InvalidToken(BAD_TOKEN)


def check(config: RedeemConfig, ctx: CheckContext) -> list[str]:
    """The answer is the public User, so that model must be registered (by the users plugin)."""
    return [] if "User" in ctx.models else ["needs the User model (the users plugin), which is not registered"]


def build_verify(config: RedeemConfig, ctx: BuildContext) -> VerifyEmailStep:
    return VerifyEmailStep(Redeemer(accounts_for(ctx.app)), public_user(ctx), cache_keys(config.cache_keys, ctx))


def build_reset(config: RedeemConfig, ctx: BuildContext) -> ResetPasswordStep:
    return ResetPasswordStep(Redeemer(accounts_for(ctx.app)), public_user(ctx), cache_keys(config.cache_keys, ctx))


_RETRY: Final = {"Retry-After": "Seconds to wait."}


def document_verify(config: RedeemConfig, doc: OperationDoc) -> None:
    doc.respond(200, "The user, now verified", schema=model_ref("User"))
    doc.problem(400, "The token is unknown, expired, already used, for another purpose, or its email changed")
    doc.problem(502, "The data service gave an answer this service could not use (the token stays usable)")
    doc.problem(503, "Token state or the data service is unavailable (the token stays usable)", headers=_RETRY)


def document_reset(config: RedeemConfig, doc: OperationDoc) -> None:
    doc.respond(204, "The password is changed and every session of the user has ended")
    doc.saves("User")  # the public user: what `user.password_reset` carries
    doc.problem(400, "The token is unknown, expired, already used, for another purpose, or the password "
                "or email changed since it was sent")
    doc.problem(502, "The data service gave an answer this service could not use (the token stays usable)")
    doc.problem(503, "Token state or the data service is unavailable", headers=_RETRY)
