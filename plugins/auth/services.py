"""The auth plugin's shared objects, made once per app in its `setup_app` and shared by its steps.

One `AuthServices` per app (a plugin-private AppKey), so every step of every pipeline sees
the same verified-token cache and, without Redis, the same in-memory token store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Final

import attrs
from aiohttp import web
from prometheus_client import Counter

from app import (
    OutageLog,
    RedisUnavailable,
    RollbackWatch,
    ServiceUnavailable,
    Unauthorized,
    data_service_key,
    plugin_settings,
    redis_key,
)
from plugins.auth.passwords import Argon2Hasher, hasher_for
from plugins.auth.revocations import (
    EMBEDDED_RECORD_READ_TTL_S,
    RECORD_READ_TTL_S,
    LocalRevocations,
    RecordRevocations,
    RedisRevocations,
    Revocations,
)
from plugins.auth.sessions import MemorySessionIndex, RedisSessionIndex, SessionIndex
from plugins.auth.settings import PasswordSettings, TokenSettings
from plugins.auth.store import MemoryTokenStore, MirroredTokenStore, RedisTokenStore, TokenStore
from plugins.auth.tokens import ACCESS, Claims, Issued, Tokens, tokens_for

log = logging.getLogger("turnstile.auth")

STORE_RETRY_AFTER_S: Final = 2
# Live sessions one user may have: a login past it ends the least recently used one. Unbounded, a
# script with the password (or a client that logs in on every start) made thousands, and the
# list (GET /auth/sessions) and every "end this session" walked them all.
MAX_SESSIONS_PER_USER: Final = 100


@attrs.frozen
class AuthServices:
    tokens: Tokens
    store: TokenStore
    hasher: Argon2Hasher
    revocations: Revocations
    # Which sessions each user has (GET /auth/sessions); the store says which still live.
    sessions: SessionIndex = attrs.field(factory=MemorySessionIndex)
    # A Redis back with older data ends every session (app/clients/redis/rollback.py); None: embedded.
    watch: RollbackWatch | None = None

    async def check_for_rollback(self) -> None:
        """Before tokens are issued: a rollback noticed after them would end them too (its
        cut-off is when it was noticed), so a login or a refresh looks first. Redis down: the
        store answers for it."""
        if self.watch is not None:
            with contextlib.suppress(RedisUnavailable):
                await self.watch.check()

    async def start_session(self, user_id: int, roles: tuple[str, ...], issued_at: float) -> tuple[Issued, Issued]:
        """A new session (refresh-token family): its first access and refresh tokens.

        issued_at: when the user record the claims come from was read (see `Tokens.issue_access`).

        Raises:
            Unauthorized: the user's tokens were revoked after `issued_at` (a password change,
                a deactivation or a role change overlapped this login): the session is ended
                at once rather than handed out.
        """
        refresh = self.tokens.issue_refresh(user_id, roles, self.store.new_family(), issued_at=issued_at)
        family = refresh.claims.family
        with store_errors():
            await self.store.start_family(family, refresh.claims.jti, self.tokens.refresh_ttl_s)
        # The sessions list (GET /auth/sessions) is a convenience: a Redis node that cannot
        # take its entry (one cluster master down, say) must not refuse the login.
        with contextlib.suppress(RedisUnavailable):
            await self.sessions.started(user_id, family, self.tokens.now(), self.tokens.refresh_ttl_s)
            await self._end_the_least_used_beyond(user_id, MAX_SESSIONS_PER_USER)
        await self.check_not_overtaken(user_id, family, issued_at)
        return self.tokens.issue_access(user_id, roles, family, issued_at=issued_at), refresh

    async def _end_the_least_used_beyond(self, user_id: int, limit: int) -> None:
        sessions = await self.sessions.of(user_id)
        if len(sessions) <= limit:
            return
        by_use = sorted(sessions, key=lambda family: sessions[family].last_used_at)
        ended = by_use[: len(sessions) - limit]
        with store_errors():
            for family in ended:
                await self.store.revoke_family(family)
        await self.sessions.forget(user_id, *ended)
        log.info("user %s logged in past %d sessions: the %d least recently used ended", user_id, limit, len(ended))

    async def session_used(self, user_id: int, family: str) -> None:
        """Record that session `family` just refreshed its tokens (its `last_used_at`)."""
        with contextlib.suppress(RedisUnavailable):  # a convenience, as in start_session
            await self.sessions.used(user_id, family, self.tokens.now(), self.tokens.refresh_ttl_s)

    async def forget_deleted_user(self, user_id: int) -> None:
        """Drop what is kept of a deleted user's sessions (when each began and was last used):
        its tokens are dead already (the revocation), so this is only data no longer needed.
        Redis down: the index expires with the last refresh token instead."""
        with contextlib.suppress(RedisUnavailable):
            await self.sessions.forget_user(user_id)

    async def check_not_overtaken(self, user_id: int, family: str, issued_at: float) -> None:
        """401, ending `family`, when the user's tokens were revoked at or after `issued_at`."""
        with store_errors():
            cutoff = await self.revocations.cutoff(user_id)
            if cutoff is not None and issued_at <= cutoff:
                await self.store.revoke_family(family)
                msg = "The account changed while signing in; sign in again."
                raise Unauthorized(msg)

    async def check_not_revoked(self, claims: Claims) -> None:
        """Raise 401 when the user's tokens were revoked at or after this one was issued, or
        (for an access token) when its session ended.

        The cut-off is the newest this process, Redis and the data service record know (see
        plugins/auth/revocations.py); with Redis down, sessions are checked against this
        process's own record (`MirroredTokenStore`).
        """
        with store_errors():
            cutoff = await self.revocations.cutoff(claims.user_id)
            if cutoff is not None and claims.iat <= cutoff:
                msg = "The token has been revoked."
                raise Unauthorized(msg)
            # A refresh token's family is checked by the rotation itself.
            if claims.type == ACCESS and not await self.store.family_alive(claims.family):
                msg = "The session has ended."
                raise Unauthorized(msg)


services_key: Final[web.AppKey[AuthServices]] = web.AppKey("auth_services")


def make_services(app: web.Application) -> AuthServices:
    """The app's AuthServices from the plugin's settings and the core's Redis (no I/O)."""
    settings = plugin_settings(app, TokenSettings)
    revocation_ttl_s = max(settings.access_token_ttl_s, settings.refresh_token_ttl_s)
    redis = app.get(redis_key)
    local = MemoryTokenStore(revocation_ttl_s=revocation_ttl_s)
    store: TokenStore = local
    sessions: SessionIndex = MemorySessionIndex()
    watch = redis.rollbacks if redis is not None else None
    if redis is not None:
        store = MirroredTokenStore(RedisTokenStore(redis, watch=watch), local, on_fallback=_count_fallback)
        sessions = RedisSessionIndex(redis)
    revocations = Revocations(
        LocalRevocations(ttl_s=revocation_ttl_s,
                         record_read_ttl_s=RECORD_READ_TTL_S if redis is not None else EMBEDDED_RECORD_READ_TTL_S),
        RecordRevocations(app[data_service_key]),
        RedisRevocations(redis, ttl_s=revocation_ttl_s, watch=watch) if redis is not None else None,
        on_fallback=_count_fallback,
    )
    hasher = hasher_for(plugin_settings(app, PasswordSettings))
    return AuthServices(tokens_for(settings), store, hasher, revocations, sessions, watch)


REVOCATION_FALLBACKS = Counter(
    "turnstile_auth_revocation_fallbacks_total",
    "Access checks answered without Redis (sessions from this process's record, cut-offs from the data service)",
)
_outage_log = OutageLog(logging.getLogger("turnstile.auth"), "token state (Redis)")


def _count_fallback(exc: BaseException) -> None:
    REVOCATION_FALLBACKS.inc()
    _outage_log.warning("checking tokens (sessions from this process's record, cut-offs from the data service)", exc)


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Redis down → 503: token state is never guessed (a revoked token must not pass)."""
    try:
        yield
    except RedisUnavailable:
        msg = "Token state is unavailable; try again shortly."
        raise ServiceUnavailable(msg, retry_after_s=STORE_RETRY_AFTER_S) from None
