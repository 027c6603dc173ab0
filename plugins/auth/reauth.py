"""The `reauthenticate` wrapper: a user changing their own email or password proves they
still know the current one (OWASP ASVS 2.1.6), so a stolen access token cannot take the
account over by changing its credentials.

An admin changing another user needs nothing more (their own token carries the admin role);
an admin changing their own email or password is a user like any other here. The current
password is checked against the data service's record (whenever a user sends it with a change of
their own account, needed or not) and then taken out of the body, so it
never goes upstream, into an event or a log. Put a `rate-limit` with ``count = "failures"``
before this step to throttle guessing (a wrong current password is a 403).

A field sent with the value the user already has (a profile form that posts the email back
unchanged) changes nothing and needs no proof: without `current_password`, such fields are
compared with the stored record and taken out of the body, and only a real change is refused.
"""

from __future__ import annotations

from typing import Final, final

import attrs
from aiohttp import web

from app import (
    BuildContext,
    DataService,
    FieldError,
    Forbidden,
    Handler,
    NotFound,
    OperationDoc,
    Template,
    UserNotFound,
    ValidationFailed,
    actor_key,
    body_key,
    data_service_key,
    request_id_key,
)
from plugins.auth.config import ReauthenticateConfig
from plugins.auth.services import AuthServices, services_key

CURRENT_PASSWORD: Final = "current_password"  # noqa: S105  # a field name, not a password


@final
@attrs.frozen
class ReauthenticateStep:
    config: ReauthenticateConfig
    services: AuthServices
    data: DataService
    user: Template

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = request.get(body_key)
        if body is None:
            return await handler(request)
        current = body.get(CURRENT_PASSWORD)
        if CURRENT_PASSWORD in body:
            # Never passed on, whoever sent it: the secret ends at the step that checks it.
            body = {k: v for k, v in body.items() if k != CURRENT_PASSWORD}
            request[body_key] = body
        if isinstance(current, str) and self._own(request):
            # Checked whenever a user sends it for their own account, needed or not: a wrong one
            # is a 403 (contract §4), not a change made as if it had been right.
            await self._check(request, current)
        elif self._needs_proof(request, body):
            body = request[body_key] = await self._without_unchanged(request, body)
            if self._needs_proof(request, body):
                changed = " or ".join(f for f in self.config.fields if f in body)
                msg = "The request body is not valid."
                raise ValidationFailed(msg, errors=[
                    FieldError(("body", CURRENT_PASSWORD), f"field required to change your own {changed}"),
                ])
        return await handler(request)

    def _own(self, request: web.Request) -> bool:
        actor = request.get(actor_key)
        return actor is not None and self.user.for_request(request) == str(actor.user_id)

    def _needs_proof(self, request: web.Request, body: dict[str, object]) -> bool:
        return any(name in body for name in self.config.fields) and self._own(request)

    async def _without_unchanged(self, request: web.Request, body: dict[str, object]) -> dict[str, object]:
        """`body` without the guarded fields whose value is already the stored one (a password
        never is: the record holds its hash)."""
        record = await self._record(request)
        return {k: v for k, v in body.items() if k not in self.config.fields or k not in record or record[k] != v}

    async def _record(self, request: web.Request) -> dict[str, object]:
        user = self.user.for_request(request)
        try:
            reply = await self.data.request("GET", f"/api/v1/users/{user}", request_id=request.get(request_id_key))
        except NotFound as exc:
            if not user.isdecimal():
                raise
            # Only the caller's own record is read here: the auth step answers it 401 (contract §4).
            raise UserNotFound(int(user), exc.detail, headers=exc.headers) from None
        return reply.data if isinstance(reply.data, dict) else {}

    async def _check(self, request: web.Request, password: str) -> None:
        record = await self._record(request)
        if not await self.services.hasher.verify(str(record.get("password_hash", "")), password):
            msg = "The current password is wrong."
            raise Forbidden(msg)


def build(config: ReauthenticateConfig, ctx: BuildContext) -> ReauthenticateStep:
    user = Template(config.user, quote=True, safe=ctx.pipeline.route.int_params)
    return ReauthenticateStep(config, ctx.app[services_key], ctx.app[data_service_key], user)


def document(config: ReauthenticateConfig, doc: OperationDoc) -> None:
    fields = " or ".join(f"`{name}`" for name in config.fields)
    doc.problem(403, f"Changing your own {fields}: `current_password` is wrong")
    doc.problem(422, f"Changing your own {fields}: `current_password` is missing")
    doc.pipeline_notes.append(f"A user changing their own {fields} must send `current_password` "
                              "(a field sent with the value it already has is no change).")
