"""What pipelines.toml may say to each step type of the accounts plugin."""

from __future__ import annotations

import attrs

from app import Templates, check_templates, template_field


@attrs.frozen(kw_only=True)
class MailRequestConfig:
    """`{ use = "verify-request" }` or `{ use = "forgot-password" }` (body `EmailRequest`).

    Answers 202 at once, the same body whether or not the address is known; the look-up, the
    token and the mail happen after the answer, so neither the body nor the time it takes
    tells a caller whether an account exists. A verification mail goes to an active,
    unverified user; a reset mail to an active user. Put `rate-limit` steps before it, per
    client and per `body.email`.
    """


@attrs.frozen(kw_only=True)
class RedeemConfig:
    """`{ use = "verify-email", cache_keys = ["user:{id}"] }` (body `VerifyRequest`) or
    `{ use = "reset-password", cache_keys = ["user:{id}"] }` (body `ResetPasswordRequest`).

    cache_keys: cache keys to invalidate once the user changed; templates over the user's
      fields (``{id}``), as the `cache` step of the user's own route names them.

    verify-email answers 200 with the user, now verified; reset-password stores the new
    password, ends every session of the user and answers 204. Either answers 400 to a token
    that is unknown, expired, already used, of the other purpose, or issued for a state that
    has changed since (another email; for a reset, another password). Put an `event-emit`
    before it for `user.verified` / `user.password_reset` (the event carries the user, never
    the token).
    """

    cache_keys: Templates = attrs.field(default=Templates(()), validator=check_templates)


@attrs.frozen(kw_only=True)
class VerificationMailConfig:
    """`{ use = "verification-mail" }` after a user was created, or
    `{ use = "verification-mail", user = "{id}" }` on a route that changes user `{id}`.

    After the rest of the chain answered 2xx with an unverified user, a verification mail goes
    to the user's address: a new user's, or a changed one.

    user: a template over the route parameters naming the user the route changes (empty on a
      route that creates one). A body whose `email` differs from the stored one then also
      makes the user unverified (`is_verified` false is sent along): the new address is
      unproven until its owner follows the link.
    """

    user: str = template_field(default="")
