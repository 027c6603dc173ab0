"""The built-in `auth` plugin: bearer tokens (JWT), login, refresh rotation, logout, revocation.

Step types: `auth` (guard), `login`, `refresh`, `logout` (terminal), `revoke-tokens` (wrapper,
also in subscriptions), `reauthenticate` (wrapper: `current_password` for one's own email or
password), `sessions` and `end-session` (terminal: a user's own sessions). Models: LoginForm,
LoginRequest, RefreshRequest, TokenPair, Session, SessionList.
"""

from __future__ import annotations

from typing import Any

from app import StepKind, StepType, hookimpl
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
from plugins.auth.models import LoginForm, LoginRequest, RefreshRequest, Session, SessionList, TokenPair


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
def register_models() -> list[type[Any]]:
    return [LoginForm, LoginRequest, RefreshRequest, TokenPair, Session, SessionList]
