"""The `auth` guard: who is calling (a bearer access token) and may they use this route."""

from __future__ import annotations

from typing import Final, final

import attrs
from aiohttp import web

from app import (
    Actor,
    BuildContext,
    CheckContext,
    DataService,
    Forbidden,
    Handler,
    MalformedRequest,
    NotFound,
    OperationDoc,
    Unauthorized,
    UserNotFound,
    actor_key,
    data_service_key,
    request_id_key,
)
from plugins.auth.config import AuthConfig
from plugins.auth.services import AuthServices, services_key
from plugins.auth.tokens import ACCESS, Claims, TokenError

_BEARER: Final = "bearer "
# The session (refresh-token family) the caller's access token belongs to, for the session steps.
session_key: Final = web.RequestKey("auth_session", str)


def unauthorized(detail: str, *, error: str | None = "invalid_token") -> Unauthorized:
    """A 401; without `error` the challenge carries no error code (RFC 6750 §3.1: no credentials)."""
    exc = Unauthorized(detail)
    if error is None:
        exc.headers["WWW-Authenticate"] = "Bearer"
    else:
        exc.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return exc


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive), else None.

    Raises:
        MalformedRequest: two Authorization headers (RFC 6750 §3.1, invalid_request): which one
            counts would be up to each reader, and a proxy reading the other would see another
            caller than this service does.
    """
    headers = request.headers
    header = headers.get("Authorization")
    if header is None:
        return None
    if len(headers.getall("Authorization")) > 1:
        msg = "Send one Authorization header, not several."
        raise MalformedRequest(msg, headers={"WWW-Authenticate": 'Bearer error="invalid_request"'})
    if header[: len(_BEARER)].lower() != _BEARER:
        return None
    token = header[len(_BEARER):].strip()
    return token or None


@final
@attrs.frozen
class AuthStep:
    config: AuthConfig
    services: AuthServices
    # Set when the pipeline requires a verified user (`verified = true`).
    data: DataService | None = None

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        allow = self.config.allow
        token = bearer_token(request)
        if token is None:
            if "anyone" in allow:
                return await handler(request)
            msg = "A bearer token is required."
            raise unauthorized(msg, error=None)
        try:
            claims = await self.authenticate(token)
        except Unauthorized:
            if "anyone" in allow:
                return await handler(request)
            raise
        actor = Actor(user_id=claims.user_id, roles=claims.roles, token_id=claims.jti)
        request[actor_key] = actor
        request[session_key] = claims.family
        if not self.permits(actor, request):
            msg = "You are not allowed to do this."
            raise Forbidden(msg)
        if self.data is not None:
            await self.require_verified(self.data, actor, request)
        try:
            return await handler(request)
        except UserNotFound as exc:
            if exc.user_id != actor.user_id:
                raise
            # The token's user is gone (deleted by the data service's own tools, its event not
            # heard yet): its tokens stop working (contract §4), on every route that reads it.
            raise unauthorized("The user this token was issued to no longer exists.") from None

    async def authenticate(self, token: str) -> Claims:
        try:
            claims = self.services.tokens.verify(token, ACCESS)
        except TokenError:
            msg = "The bearer token is invalid or has expired."
            raise unauthorized(msg) from None
        await self.services.check_not_revoked(claims)
        return claims

    async def require_verified(self, data: DataService, actor: Actor, request: web.Request) -> None:
        """403 unless the caller's stored record says `is_verified`."""
        try:
            reply = await data.request("GET", f"/api/v1/users/{actor.user_id}", request_id=request.get(request_id_key))
        except NotFound:
            msg = "The account no longer exists."
            raise unauthorized(msg) from None
        if not isinstance(reply.data, dict) or reply.data.get("is_verified") is not True:
            msg = "Verify your email address first: follow the link in the verification mail."
            raise Forbidden(msg)

    def permits(self, actor: Actor, request: web.Request) -> bool:
        allow = self.config.allow
        if "anyone" in allow or "authenticated" in allow:
            return True
        if "admin" in allow and actor.is_admin:
            return True
        return "self" in allow and request.match_info.get(self.config.self_param) == str(actor.user_id)


def check(config: AuthConfig, ctx: CheckContext) -> list[str]:
    """"self" needs the route parameter that holds the user id; "verified" needs a caller."""
    problems = []
    if "self" in config.allow and config.self_param not in ctx.route_params:
        problems.append(f"allows 'self' but the route has no {{{config.self_param}}} parameter (set self_param)")
    if config.verified and "anyone" in config.allow:
        problems.append("verified = true needs a caller: it cannot go with allow 'anyone'")
    return problems


def build(config: AuthConfig, ctx: BuildContext) -> AuthStep:
    data = ctx.app[data_service_key] if config.verified else None
    return AuthStep(config, ctx.app[services_key], data)


def document(config: AuthConfig, doc: OperationDoc) -> None:
    challenge = {"WWW-Authenticate": 'The bearer challenge, e.g. `Bearer error="invalid_token"`.'}
    doc.problem(400, "Several Authorization headers", headers=challenge)
    if "anyone" not in config.allow:
        doc.require_bearer()
        doc.problem(401, "Missing, invalid, expired or revoked bearer token", headers=challenge)
    if not {"anyone", "authenticated"} & set(config.allow):
        who = " or ".join({"admin": "an admin", "self": "the user themselves"}[a] for a in config.allow)
        doc.problem(403, f"Only {who} may do this")
    if config.verified:
        doc.problem(403, "The caller has not verified their email address")
    doc.problem(503, "Token state (Redis) is unavailable", headers={"Retry-After": "Seconds to wait."})
