"""What pipelines.toml may say to each step type of the auth plugin."""

from __future__ import annotations

from typing import Final

import attrs

from app import template_field

ALLOW_CHOICES: Final = ("anyone", "authenticated", "admin", "self")


def _check_allow(_inst: object, _attr: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    # cattrs reports a validator's error without the field's path, so the message names it.
    choices = ", ".join(ALLOW_CHOICES)
    if not value:
        msg = f"allow: must name at least one of {choices}"
        raise ValueError(msg)
    for item in value:
        if item not in ALLOW_CHOICES:
            msg = f"allow: unknown {item!r}: expected any of {choices}"
            raise ValueError(msg)


@attrs.frozen(kw_only=True)
class AuthConfig:
    """`{ use = "auth", allow = ["self", "admin"], self_param = "id" }`

    allow: who may pass; any one match is enough. "anyone": also anonymous callers (the
      actor is set when a valid token comes along); "authenticated": any valid access
      token; "admin": the "admin" role; "self": the route parameter `self_param` equals
      the caller's user id.
    self_param: the route parameter holding a user id, for "self" (the route must have it).
    verified: the caller must also have verified their email (`is_verified`); otherwise 403.
      Read from the data service on each request, so verifying takes effect at once, and so
      does an email change that made the user unverified (a read per request on such routes).

    A presented token is checked on every request against its user's revocation cut-off (the
    newest this process, Redis and the data service record know) and, for an access token, its
    session; when none of them can tell, the answer is 503, also under "anyone": a token is
    never half-trusted.
    """

    allow: tuple[str, ...] = attrs.field(default=("authenticated",), validator=_check_allow)
    self_param: str = "id"
    verified: bool = False


@attrs.frozen(kw_only=True)
class LoginConfig:
    """`{ use = "login" }` (body `LoginRequest`): email and password → a token pair.

    rehash: when the stored hash was made with older argon2 costs, store a new one.
    """

    rehash: bool = True


@attrs.frozen(kw_only=True)
class RefreshConfig:
    """`{ use = "refresh", grace_s = 5 }` (body `RefreshRequest`): a refresh token → a new pair (rotation).

    grace_s: for this many seconds after a refresh, presenting the same refresh token again (a
      client's retry, two tabs, two instances) answers the same new pair instead of counting
      as reuse, as long as that pair's refresh token is still the session's current one; a
      replay after the window revokes the whole session. 0 turns the window off (0 to 60).
    """

    grace_s: float = attrs.field(default=5.0, validator=[attrs.validators.ge(0), attrs.validators.le(60)])


@attrs.frozen(kw_only=True)
class LogoutConfig:
    """`{ use = "logout" }` (body `RefreshRequest`, after `auth`): revoke the token's family → 204."""


@attrs.frozen(kw_only=True)
class RevokeTokensConfig:
    """`{ use = "revoke-tokens", user = "{id}" }`

    user: template naming the user whose tokens die: over the route parameters in a
      pipeline (after a DELETE, or a body that sets `is_active` to false or carries
      `password` or `roles`, once the rest of the chain answered 2xx); over the event's
      `data` in a subscription (on `user.deleted`, and `user.updated` with `is_active` false).
    """

    user: str = template_field()


@attrs.frozen(kw_only=True)
class ReauthenticateConfig:
    """`{ use = "reauthenticate", user = "{id}", fields = ["email", "password"] }`

    user: template naming the user the route changes (over the route parameters).
    fields: the body fields whose change by the user themself needs `current_password`
      in the body (checked against the stored hash; 422 when missing, 403 when wrong).
    """

    user: str = template_field()
    fields: tuple[str, ...] = ("email", "password")


@attrs.frozen(kw_only=True)
class SessionsConfig:
    """`{ use = "sessions" }` (after `auth`): the caller's live sessions, each with its id, when it
    began, when it last refreshed its tokens, and whether it is the one asking."""


@attrs.frozen(kw_only=True)
class EndSessionConfig:
    """`{ use = "end-session", session_param = "id" }` (after `auth`): end one of the caller's
    sessions; its access and refresh tokens are refused at once, on every instance.

    session_param: the route parameter holding the session's id.
    """

    session_param: str = "id"
