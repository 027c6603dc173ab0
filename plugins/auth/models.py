"""The request and response bodies of the token endpoints (registered for `body = "..."` and the docs)."""

from __future__ import annotations

import datetime
from typing import ClassVar, Literal

import attrs

from app import schema_field


@attrs.frozen(kw_only=True)
class LoginForm:
    """The OAuth2 resource owner password credentials grant (RFC 6749 §4.3.2), as Swagger UI's
    Authorize button and OAuth2 client libraries send it; `username` is the email.

    `scope`, `client_id` and `client_secret` are accepted and ignored: every token has the
    user's roles, and the API has no registered clients. Any other parameter (`audience`,
    `resource`, a vendor's) is ignored too, as RFC 6749 §3.2 requires, but `email`: a form
    sends the email as `username`, and both at once are refused (422), since a rate limit and
    the login could otherwise each read another one.
    """

    ignores_unknown_fields: ClassVar[bool] = True

    grant_type: Literal["password"] = schema_field(description="Always `password`.", example="password")
    username: str = schema_field(description="The account's email (trimmed, case-insensitive).",
                                 minLength=1, maxLength=320, example="ada@example.com")
    password: str = schema_field(description="The account's password.", minLength=1, maxLength=128)
    scope: str | None = schema_field(default=None, nullable=False, maxLength=1024,
                                     description="Space-separated scopes (ignored).")
    client_id: str | None = schema_field(default=None, nullable=False, maxLength=256,
                                         description="The client's id (ignored).")
    client_secret: str | None = schema_field(default=None, nullable=False, maxLength=256,
                                             description="The client's secret (ignored).")


@attrs.frozen(kw_only=True)
class LoginRequest:
    """Credentials: JSON, or the OAuth2 password form (`LoginForm`; its `username` is the email)."""

    # The form is checked against LoginForm, then these of its fields become the body.
    form_model: ClassVar[type[LoginForm]] = LoginForm
    form_fields: ClassVar[dict[str, str]] = {"username": "email", "password": "password"}

    email: str = schema_field(description="The account's email (trimmed, case-insensitive).",
                              minLength=1, maxLength=320, example="ada@example.com")
    password: str = schema_field(description="The account's password.", minLength=1, maxLength=128)


@attrs.frozen(kw_only=True)
class RefreshForm:
    """The OAuth2 refresh token grant (RFC 6749 §6), as OAuth2 client libraries send it to the
    flow's `refreshUrl`. `scope`, `client_id` and `client_secret` are accepted and ignored, as any
    other parameter (RFC 6749 §3.2)."""

    ignores_unknown_fields: ClassVar[bool] = True

    grant_type: Literal["refresh_token"] = schema_field(description="Always `refresh_token`.",
                                                        example="refresh_token")
    refresh_token: str = schema_field(description="A refresh token from login or an earlier refresh.",
                                      minLength=1, maxLength=4096)
    scope: str | None = schema_field(default=None, nullable=False, maxLength=1024,
                                     description="Space-separated scopes (ignored).")
    client_id: str | None = schema_field(default=None, nullable=False, maxLength=256,
                                         description="The client's id (ignored).")
    client_secret: str | None = schema_field(default=None, nullable=False, maxLength=256,
                                             description="The client's secret (ignored).")


@attrs.frozen(kw_only=True)
class RefreshRequest:
    """A refresh token, to exchange (refresh) or revoke with its family (logout): JSON, or the
    OAuth2 refresh token grant's form (`RefreshForm`)."""

    form_model: ClassVar[type[RefreshForm]] = RefreshForm
    form_fields: ClassVar[dict[str, str]] = {"refresh_token": "refresh_token"}

    refresh_token: str = schema_field(description="A refresh token from login or an earlier refresh.",
                                      minLength=1, maxLength=4096)


@attrs.frozen(kw_only=True)
class TokenPair:
    """A new access token and the refresh token that replaces the presented one."""

    access_token: str = schema_field(description="Bearer token for the API (a JWT).")
    refresh_token: str = schema_field(description="Single-use token for POST /api/v1/auth/refresh.")
    token_type: Literal["bearer"] = schema_field(description="Always `bearer`.", example="bearer")
    expires_in: int = schema_field(description="Seconds until the access token expires.", example=900)


@attrs.frozen(kw_only=True)
class Session:
    """One session: the tokens one login started, renewed by each refresh."""

    id: str = schema_field(description="The session's id (for DELETE /api/v1/auth/sessions/{id}).",
                           example="9f1c0d6e2b7a4c3e8d5f6a7b8c9d0e1f")
    created_at: datetime.datetime = schema_field(description="When the login that began it happened (RFC 3339).")
    last_used_at: datetime.datetime = schema_field(
        description="When it last refreshed its tokens, or began if it never did (RFC 3339).")
    current: bool = schema_field(description="Whether the access token of this request belongs to it.")


@attrs.frozen(kw_only=True)
class SessionList:
    """The caller's live sessions, the most recently used first."""

    items: list[Session] = schema_field(description="The sessions.")
