"""The request and response bodies of the token endpoints (registered for `body = "..."` and the docs)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from app.models.schema import schema_field


@attrs.frozen(kw_only=True)
class LoginRequest:
    """Credentials: JSON, or the OAuth2 password form (`username` is the email)."""

    form_fields: ClassVar[dict[str, str]] = {"username": "email"}

    email: str = schema_field(description="The account's email (trimmed, case-insensitive).",
                              minLength=1, maxLength=320, example="ada@example.com")
    password: str = schema_field(description="The account's password.", minLength=1, maxLength=128)


@attrs.frozen(kw_only=True)
class RefreshRequest:
    """A refresh token, to exchange (refresh) or revoke with its family (logout)."""

    refresh_token: str = schema_field(description="A refresh token from login or an earlier refresh.",
                                      minLength=1, maxLength=4096)


@attrs.frozen(kw_only=True)
class TokenPair:
    """A new access token and the refresh token that replaces the presented one."""

    access_token: str = schema_field(description="Bearer token for the API (a JWT).")
    refresh_token: str = schema_field(description="Single-use token for POST /api/v1/auth/refresh.")
    token_type: str = schema_field(description="Always `bearer`.", example="bearer")
    expires_in: int = schema_field(description="Seconds until the access token expires.", example=900)
