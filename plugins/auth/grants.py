"""The token endpoints: `login` (credentials → pair), `refresh` (rotation) and `logout`.

Each is a TERMINAL step reading the validated body from `request[body_key]`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final, final

import attrs
import orjson
from aiohttp import web

from app import (
    BuildContext,
    DataService,
    Forbidden,
    Handler,
    NotFound,
    OperationDoc,
    ProblemError,
    Unauthorized,
    actor_key,
    body_key,
    data_service_key,
    json_response,
    model_ref,
    request_id_key,
)
from plugins.auth.config import LoginConfig, LogoutConfig, RefreshConfig
from plugins.auth.grace import Unsealable, seal, unseal
from plugins.auth.services import AuthServices, services_key, store_errors
from plugins.auth.step import unauthorized
from plugins.auth.store import Rotation
from plugins.auth.tokens import REFRESH, Claims, TokenError
from plugins.users import normalise_email, user_record, user_with_email

log = logging.getLogger("turnstile.auth")

BAD_CREDENTIALS: Final = "Incorrect email or password."
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


async def issue_pair(services: AuthServices, user_id: int, roles: tuple[str, ...], issued_at: float) -> web.Response:
    """A 200 with the first access and refresh tokens of a new session.

    issued_at: when the user record was read (before the password was checked), so a change
    to the account that lands meanwhile kills these tokens instead of being outlived by them.
    """
    access, refresh = await services.start_session(user_id, roles, issued_at)
    return _pair_response(services, access.token, refresh.token)


def _pair_response(services: AuthServices, access_token: str, refresh_token: str) -> web.Response:
    body = {
        "access_token": access_token, "refresh_token": refresh_token,
        "token_type": "bearer", "expires_in": services.tokens.access_ttl_s,
    }
    return json_response(body, headers=_NO_STORE)


@contextlib.contextmanager
def oauth2_errors() -> Iterator[None]:
    """A refused grant (401, 403) also says so as OAuth2 clients read a token endpoint's error
    (RFC 6749 §5.2: `"error": "invalid_grant"`): without it a standard client library took the
    problem document for a token."""
    try:
        yield
    except ProblemError as exc:
        if exc.status in (401, 403):
            exc.extensions.setdefault("error", "invalid_grant")
        raise


def _roles(user: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(r) for r in user.get("roles", ()))


@final
@attrs.frozen
class LoginStep:
    config: LoginConfig
    services: AuthServices
    data: DataService

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with oauth2_errors():
            return await self._login(request)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        # Every login costs a hash (a dummy one for an unknown email): refused before the read.
        self.services.hasher.gate.check_capacity()
        body = request[body_key]
        email, password = normalise_email(str(body["email"])), str(body["password"])
        request_id = request.get(request_id_key)
        await self.services.check_for_rollback()
        issued_at = self.services.tokens.now()  # before the read: see issue_pair
        user = await user_with_email(self.data, email, request_id)
        if user is None:
            await self.services.hasher.verify_dummy(password)
            raise unauthorized(BAD_CREDENTIALS, error=None)
        password_hash = str(user["password_hash"])
        if not await self.services.hasher.verify(password_hash, password):
            raise unauthorized(BAD_CREDENTIALS, error=None)
        if not user["is_active"]:
            msg = "This account is disabled."
            raise Forbidden(msg)
        if self.config.rehash and self.services.hasher.needs_rehash(password_hash):
            await self._rehash(int(user["id"]), password, request_id)
        await self.services.revocations.seen(int(user["id"]), user)
        return await issue_pair(self.services, int(user["id"]), _roles(user), issued_at)

    async def _rehash(self, user_id: int, password: str, request_id: str | None) -> None:
        new_hash = await self.services.hasher.hash(password)
        try:
            await self.data.request(
                "PATCH", f"/api/v1/users/{user_id}", json={"password_hash": new_hash}, request_id=request_id
            )
        except ProblemError as exc:
            # The login itself is fine; the next one tries again.
            log.warning("rehash of user %s failed: %s", user_id, exc.detail)


@final
@attrs.frozen
class RefreshStep:
    config: RefreshConfig
    services: AuthServices
    data: DataService

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with oauth2_errors():
            return await self._refresh(request)

    async def _refresh(self, request: web.Request) -> web.StreamResponse:
        claims = verify_refresh(self.services, request[body_key]["refresh_token"])
        await self.services.check_for_rollback()
        await self.services.check_not_revoked(claims)
        tokens = self.services.tokens
        issued_at = tokens.now()  # before the read, as for a login
        user = await self._current_user(claims, request.get(request_id_key))
        roles = _roles(user)
        new = tokens.issue_refresh(claims.user_id, roles, claims.family, issued_at=issued_at)
        access = tokens.issue_access(claims.user_id, roles, claims.family, issued_at=issued_at)
        pair = _Pair(access.token, new.token, issued_at)
        presented = request[body_key]["refresh_token"]
        with store_errors():
            rotated = await self.services.store.rotate(
                claims.family, claims.jti, new.claims.jti, tokens.refresh_ttl_s,
                pair=seal(pair.to_text(), presented), grace_s=self.config.grace_s,
            )
        if rotated.rotation is Rotation.REPEATED and rotated.pair is not None:
            pair = _kept_pair(rotated.pair, presented)  # a retry within the grace window: the same pair
        elif rotated.rotation is Rotation.REUSED:
            log.warning("refresh token reused for user %s: token family revoked", claims.user_id)
            msg = "The refresh token was already used; every token of its session is revoked."
            raise unauthorized(msg)
        elif rotated.rotation is not Rotation.ROTATED:
            msg = "The refresh token has been revoked."
            raise unauthorized(msg)
        await self.services.check_not_overtaken(claims.user_id, claims.family, pair.issued_at)
        await self.services.session_used(claims.user_id, claims.family)
        return _pair_response(self.services, pair.access_token, pair.refresh_token)

    async def _current_user(self, claims: Claims, request_id: str | None) -> dict[str, Any]:
        """The user as the data service has it now; 401 (and the family revoked) when gone or disabled."""
        try:
            reply = await self.data.request("GET", f"/api/v1/users/{claims.user_id}", request_id=request_id)
        except NotFound:
            user = None
        else:
            # A record that does not fit is a 502 that ends nothing: the session outlives the glitch.
            # Checked whole, as a login's: its cut-off (sessions_revoked_at) decides this refresh.
            user = user_record(reply.data, with_hash=True)
        if user is None or not user["is_active"]:
            with store_errors():
                await self.services.store.revoke_family(claims.family)
            msg = "The account no longer exists or is disabled."
            raise unauthorized(msg)
        await self.services.revocations.seen(claims.user_id, user)
        return user


@attrs.frozen
class _Pair:
    """A refresh's answer, as the session's grace entry keeps it (it is answered again, as is)."""

    access_token: str
    refresh_token: str
    issued_at: float

    def to_text(self) -> str:
        return orjson.dumps(attrs.asdict(self)).decode()

    @classmethod
    def from_text(cls, text: str) -> _Pair:
        raw = orjson.loads(text)
        return cls(str(raw["access_token"]), str(raw["refresh_token"]), float(raw["issued_at"]))


def _kept_pair(kept: str, presented: str) -> _Pair:
    """The pair the grace entry keeps, sealed with the refresh token it answered (plugins/auth/grace.py).

    Raises:
        Unauthorized: it does not open (corrupt): the token is spent, and nothing else is known.
    """
    try:
        return _Pair.from_text(unseal(kept, presented))
    except Unsealable:
        if kept.startswith("{"):  # kept in plain text by a process of an earlier release
            return _Pair.from_text(kept)
        log.error("the grace entry of a refresh does not open with the token it answered")
        msg = "The refresh token was already used."
        raise unauthorized(msg) from None


def verify_refresh(services: AuthServices, token: str) -> Claims:
    try:
        return services.tokens.verify(token, REFRESH)
    except TokenError:
        msg = "The refresh token is invalid or has expired."
        raise unauthorized(msg) from None


@final
@attrs.frozen
class LogoutStep:
    config: LogoutConfig
    services: AuthServices

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        actor = request.get(actor_key)
        if actor is None:
            msg = "A bearer token is required."
            raise unauthorized(msg, error=None)
        # A refused refresh token says so as a token endpoint does (`invalid_grant`), with a
        # challenge that names no error: the caller's access token is good, and a client told
        # `invalid_token` would drop it.
        with oauth2_errors():
            try:
                claims = verify_refresh(self.services, request[body_key]["refresh_token"])
            except Unauthorized as exc:
                raise unauthorized(exc.detail, error=None) from None
            if claims.user_id != actor.user_id:
                raise unauthorized("The refresh token is not yours.", error=None)
        with store_errors():
            await self.services.store.revoke_family(claims.family)
        return web.Response(status=204)


def build_login(config: LoginConfig, ctx: BuildContext) -> LoginStep:
    return LoginStep(config, ctx.app[services_key], ctx.app[data_service_key])


def build_refresh(config: RefreshConfig, ctx: BuildContext) -> RefreshStep:
    return RefreshStep(config, ctx.app[services_key], ctx.app[data_service_key])


def build_logout(config: LogoutConfig, ctx: BuildContext) -> LogoutStep:
    return LogoutStep(config, ctx.app[services_key])


_CHALLENGE: Final = {"WWW-Authenticate": "The bearer challenge."}
_RETRY: Final = {"Retry-After": "Seconds to wait."}


def document_login(config: LoginConfig, doc: OperationDoc) -> None:
    doc.respond(200, "An access token and a refresh token", schema=model_ref("TokenPair"))
    doc.problem(401, "Incorrect email or password (the same answer for both)", headers=_CHALLENGE)
    doc.problem(403, "The account is disabled")
    doc.problem(502, "The data service gave an answer this service could not use")
    doc.problem(503, "The data service or token state is unavailable", headers=_RETRY)


def document_refresh(config: RefreshConfig, doc: OperationDoc) -> None:
    doc.respond(200, "A new pair; the presented refresh token is spent (presented again within "
                f"{config.grace_s:g} s, it answers the same pair)", schema=model_ref("TokenPair"))
    doc.problem(401, "Invalid, expired, revoked or reused refresh token (reuse revokes its family)",
                headers=_CHALLENGE)
    doc.problem(502, "The data service gave an answer this service could not use (the session goes on)")
    doc.problem(503, "The data service or token state is unavailable", headers=_RETRY)


def document_logout(config: LogoutConfig, doc: OperationDoc) -> None:
    doc.respond(204, "Logged out: the refresh token's family is revoked")
    doc.problem(401, "No valid bearer token; or the refresh token is invalid or not the caller's "
                     "(`error: invalid_grant`, a bare `Bearer` challenge)", headers=_CHALLENGE)
    doc.problem(503, "Token state is unavailable", headers=_RETRY)
