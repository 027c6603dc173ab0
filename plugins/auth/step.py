"""The `auth` guard: who is calling (a bearer access token) and may they use this route."""

from __future__ import annotations

from typing import Final, final

import attrs
from aiohttp import web

from app import Actor, BuildContext, CheckContext, Forbidden, Handler, OperationDoc, Unauthorized, actor_key
from plugins.auth.config import AuthConfig
from plugins.auth.services import AuthServices, services_key
from plugins.auth.tokens import ACCESS, TokenError

_BEARER: Final = "bearer "


def unauthorized(detail: str, *, error: str | None = "invalid_token") -> Unauthorized:
    """A 401; without `error` the challenge carries no error code (RFC 6750 §3.1: no credentials)."""
    exc = Unauthorized(detail)
    if error is None:
        exc.headers["WWW-Authenticate"] = "Bearer"
    else:
        exc.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return exc


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive), else None."""
    header = request.headers.get("Authorization")
    if header is None or header[: len(_BEARER)].lower() != _BEARER:
        return None
    token = header[len(_BEARER):].strip()
    return token or None


@final
@attrs.frozen
class AuthStep:
    config: AuthConfig
    services: AuthServices

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        allow = self.config.allow
        token = bearer_token(request)
        if token is None:
            if "anyone" in allow:
                return await handler(request)
            msg = "A bearer token is required."
            raise unauthorized(msg, error=None)
        try:
            actor = await self.authenticate(token)
        except Unauthorized:
            if "anyone" in allow:
                return await handler(request)
            raise
        request[actor_key] = actor
        if not self.permits(actor, request):
            msg = "You are not allowed to do this."
            raise Forbidden(msg)
        return await handler(request)

    async def authenticate(self, token: str) -> Actor:
        try:
            claims = self.services.tokens.verify(token, ACCESS)
        except TokenError:
            msg = "The bearer token is invalid or has expired."
            raise unauthorized(msg) from None
        await self.services.check_not_revoked(claims)
        return Actor(user_id=claims.user_id, roles=claims.roles, token_id=claims.jti)

    def permits(self, actor: Actor, request: web.Request) -> bool:
        allow = self.config.allow
        if "anyone" in allow or "authenticated" in allow:
            return True
        if "admin" in allow and actor.is_admin:
            return True
        return "self" in allow and request.match_info.get(self.config.self_param) == str(actor.user_id)


def check(config: AuthConfig, ctx: CheckContext) -> list[str]:
    """"self" needs the route parameter that holds the user id."""
    if "self" in config.allow and config.self_param not in ctx.route_params:
        return [f"allows 'self' but the route has no {{{config.self_param}}} parameter (set self_param)"]
    return []


def build(config: AuthConfig, ctx: BuildContext) -> AuthStep:
    return AuthStep(config, ctx.app[services_key])


def document(config: AuthConfig, doc: OperationDoc) -> None:
    challenge = {"WWW-Authenticate": 'The bearer challenge, e.g. `Bearer error="invalid_token"`.'}
    if "anyone" not in config.allow:
        doc.require_bearer()
        doc.problem(401, "Missing, invalid, expired or revoked bearer token", headers=challenge)
    if not {"anyone", "authenticated"} & set(config.allow):
        who = " or ".join({"admin": "an admin", "self": "the user themselves"}[a] for a in config.allow)
        doc.problem(403, f"Only {who} may do this")
    doc.problem(503, "Token state (Redis) is unavailable", headers={"Retry-After": "Seconds to wait."})
