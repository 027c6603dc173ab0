"""The built-in `auth` plugin: bearer tokens (JWT), login, refresh rotation, logout, revocation.

Step types: `auth` (guard), `login`, `refresh`, `logout` (terminal), `revoke-tokens` (wrapper,
also in subscriptions), `reauthenticate` (wrapper: `current_password` for one's own email or
password), `sessions` and `end-session` (terminal: a user's own sessions). Models: LoginForm,
LoginRequest, RefreshForm, RefreshRequest, TokenPair, Session, SessionList. Route: the JWK Set at
/.well-known/jwks.json (plugins/auth/jwks.py). Settings: JWT_*, ACCESS_TOKEN_TTL_S,
REFRESH_TOKEN_TTL_S, ARGON2_* (plugins/auth/settings.py). It provides
password hashing to other plugins (`password_hasher_key`) and mirrors its token-state keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from app import (
    PipelineFile,
    PluginRoute,
    Resources,
    StepKind,
    StepType,
    hookimpl,
    password_hasher_key,
    plugin_settings,
    redis_key,
)
from plugins.auth import grants, reauth, revoke, session_steps, step
from plugins.auth.config import (
    AuthConfig,
    EndSessionConfig,
    LoginConfig,
    LogoutConfig,
    ReauthenticateConfig,
    RefreshConfig,
    RevokeTokensConfig,
    SessionsConfig,
)
from plugins.auth.jwks import JWKS_ROUTE
from plugins.auth.models import (
    LoginForm,
    LoginRequest,
    RefreshForm,
    RefreshRequest,
    Session,
    SessionList,
    TokenPair,
)
from plugins.auth.services import make_services, services_key
from plugins.auth.session_ends import SessionEnds
from plugins.auth.settings import PasswordSettings, TokenSettings
from plugins.auth.store import FAMILY_PREFIX, MIRRORED_PREFIXES, MirroredTokenStore


@hookimpl
def register_settings() -> list[type[Any]]:
    return [TokenSettings, PasswordSettings]


@hookimpl
def register_mirrored_keys(app: web.Application, pipelines: PipelineFile) -> list[str]:
    return list(MIRRORED_PREFIXES)


@hookimpl
def setup_app(app: web.Application, resources: Resources) -> None:
    services = resources.provide(
        services_key, make_services(app),
        description="token signing and checks, and the token store (Redis when REDIS_URL is set, else memory)",
    )
    resources.provide(password_hasher_key, services.hasher, description="argon2id password hashing (ARGON2_*)")
    redis = app.get(redis_key)
    if redis is not None and isinstance(services.store, MirroredTokenStore):
        ends = SessionEnds(redis, FAMILY_PREFIX, services.store.local,
                           remember_s=plugin_settings(app, TokenSettings).access_token_ttl_s)

        async def hearing_session_ends(_app: web.Application) -> AsyncIterator[None]:
            async with ends.running():
                yield

        resources.add("session-ends", hearing_session_ends,
                      description="sessions other instances end, recorded for a Redis outage (Redis's pushes)")


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="auth", config_cls=AuthConfig, build=step.build, kind=StepKind.GUARD,
                 document=step.document, check=step.check),
        StepType(name="login", config_cls=LoginConfig, build=grants.build_login, kind=StepKind.TERMINAL,
                 document=grants.document_login),
        StepType(name="refresh", config_cls=RefreshConfig, build=grants.build_refresh, kind=StepKind.TERMINAL,
                 document=grants.document_refresh),
        StepType(name="logout", config_cls=LogoutConfig, build=grants.build_logout, kind=StepKind.TERMINAL,
                 document=grants.document_logout),
        StepType(name="revoke-tokens", config_cls=RevokeTokensConfig, build=revoke.build,
                 kind=StepKind.WRAPPER, document=revoke.document, build_for_message=revoke.build_for_message),
        StepType(name="reauthenticate", config_cls=ReauthenticateConfig, build=reauth.build,
                 kind=StepKind.WRAPPER, document=reauth.document),
        StepType(name="sessions", config_cls=SessionsConfig, build=session_steps.build_sessions,
                 kind=StepKind.TERMINAL, document=session_steps.document_sessions),
        StepType(name="end-session", config_cls=EndSessionConfig, build=session_steps.build_end_session,
                 kind=StepKind.TERMINAL, document=session_steps.document_end_session,
                 check=session_steps.check_end_session),
    ]


@hookimpl
def register_routes() -> list[PluginRoute]:
    return [JWKS_ROUTE]


@hookimpl
def register_models() -> list[type[Any]]:
    return [LoginForm, LoginRequest, RefreshForm, RefreshRequest, TokenPair, Session, SessionList]
