"""The `revoke-tokens` wrapper: after a change that must end a user's sessions, end them.

In a pipeline it acts after the rest of the chain answered 2xx: on DELETE, or when the
validated body sets `is_active` to false or carries `password` or `roles` (whether or not
they differ from the stored ones: the step cannot see those, so it errs on the safe side).
In a subscription it acts on `user.deleted`, and on `user.updated` with `is_active` false.

A revocation is a cut-off time (plugins/auth/revocations.py). In a pipeline it is now, and is
recorded in the data service too: once the record has it, the step succeeds even when Redis
is down (Redis gets it when it answers); when the record cannot take it the answer is 503,
though the change itself was saved (and its event published, see event-emit). In a
subscription it is the event's `occurred_at`, kept by this process and Redis; the record was
the producer's to write (and a deleted or disabled user counts as revoked anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from collections.abc import Mapping
from typing import Any, Final, final

import attrs
from aiohttp import web

from app import (
    BuildContext,
    Event,
    Handler,
    MessageHandler,
    OperationDoc,
    ProblemError,
    RedisUnavailable,
    ServiceUnavailable,
    SubscriptionContext,
    actor_key,
    body_key,
    committed_key,
    complete_despite_cancellation,
    outcome_unknown_key,
)
from plugins.auth.config import RevokeTokensConfig
from plugins.auth.services import AuthServices, services_key

log = logging.getLogger("turnstile.auth")

_SESSION_FIELDS: Final = ("password", "roles")
_FORMATTER: Final = string.Formatter()


def user_id_from(template: str, values: Mapping[str, Any]) -> int | None:
    """The user id `template` names over `values`, or None when it is not a whole number."""
    try:
        text = _FORMATTER.vformat(template, (), values)
    except (KeyError, AttributeError, IndexError, ValueError):
        return None
    return int(text) if text.isdigit() else None


def ends_sessions(method: str, body: Mapping[str, Any] | None) -> bool:
    if method == "DELETE":
        return True
    if body is None:
        return False
    return body.get("is_active") is False or any(name in body for name in _SESSION_FIELDS)


@final
@attrs.frozen
class RevokeTokensStep:
    config: RevokeTokensConfig
    services: AuthServices

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            # Cancelled once the change was saved, or perhaps saved (`complete_despite_cancellation`
            # says when): the sessions it ends must end all the same.
            committed = request.get(committed_key)
            if committed is None and outcome_unknown_key in request:
                committed = web.Response(status=200)
            if committed is not None:
                with contextlib.suppress(ServiceUnavailable):  # logged; the cancellation stands
                    await complete_despite_cancellation(self._end_sessions(request, committed))
            raise
        except Exception:
            # Saved, though a step after the write failed, or perhaps saved (its answer was lost:
            # an admin who disabled an account and got a 504 must not leave it signed in): the
            # sessions the change ends end.
            committed = request.get(committed_key)
            if committed is None and outcome_unknown_key in request:
                committed = web.Response(status=200)
            if committed is not None:
                with contextlib.suppress(ServiceUnavailable):  # logged; the request's own error stands
                    await self._end_sessions(request, committed)
            raise
        saved = response if 200 <= response.status < 300 else request.get(committed_key, response)
        await self._end_sessions(request, saved)
        return response

    async def _end_sessions(self, request: web.Request, response: web.StreamResponse) -> None:
        if not 200 <= response.status < 300 or not ends_sessions(request.method, request.get(body_key)):
            return
        values: dict[str, Any] = dict(request.match_info)
        actor = request.get(actor_key)
        if actor is not None:
            values["actor"] = actor.user_id
        user_id = user_id_from(self.config.user, values)
        if user_id is None:
            return
        try:
            # Durable: once the data service has the cut-off, Redis may catch up later.
            await self.services.revocations.revoke(user_id)
        except ProblemError as exc:
            log.warning("could not record the revocation of user %s's tokens: %s", user_id, exc.detail)
            msg = "The change was saved, but the user's tokens could not be revoked; retry."
            raise ServiceUnavailable(msg) from None
        if request.method == "DELETE":
            await self.services.forget_deleted_user(user_id)


@final
@attrs.frozen
class RevokeTokensMessageStep:
    config: RevokeTokensConfig
    services: AuthServices

    async def __call__(self, event: Event, handler: MessageHandler) -> None:
        if event.type == "user.deleted" or (event.type == "user.updated" and event.data.get("is_active") is False):
            user_id = user_id_from(self.config.user, event.data)
            if user_id is not None:
                await self._revoke(user_id, event)
        await handler(event)

    async def _revoke(self, user_id: int, event: Event) -> None:
        # As of the change, not of its delivery: a late event must not kill the sessions of a
        # user re-enabled and logged in meanwhile. The record was the producer's to write.
        if not await self.services.revocations.revoke(user_id, event.timestamp.timestamp(), durable=False):
            msg = f"revocation of user {user_id} deferred until Redis answers"
            raise RedisUnavailable(msg)  # the message waits for Redis too
        if event.type == "user.deleted":  # (a deletion made elsewhere, or by a producer of its own)
            await self.services.forget_deleted_user(user_id)


def build(config: RevokeTokensConfig, ctx: BuildContext) -> RevokeTokensStep:
    return RevokeTokensStep(config, ctx.app[services_key])


def build_for_message(config: RevokeTokensConfig, ctx: SubscriptionContext) -> RevokeTokensMessageStep:
    return RevokeTokensMessageStep(config, ctx.app[services_key])


def document(config: RevokeTokensConfig, doc: OperationDoc) -> None:
    doc.problem(503, "The change was saved but the user's tokens could not be revoked",
                headers={"Retry-After": "Seconds to wait."})
