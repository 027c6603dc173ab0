"""The request and response bodies of the account flows (registered for `body = "..."` and the docs)."""

from __future__ import annotations

from typing import Final

import attrs

from app import schema_field

# Spaces, spelled out: `\s` means other characters to Python (which checks the pattern) than to
# ECMAScript (which JSON Schema's patterns follow, so the OpenAPI document's readers), e.g. U+0085.
_SPACE: Final = r"\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_NOT_IN_PART: Final = rf"@{_SPACE}\x00-\x1f\x7f"
# An address, loosely (a body's email is normalised before this; the users plugin checks a stored
# one more strictly): an unknown address is answered as a known one anyway.
EMAIL_PATTERN: Final = rf"^[^{_NOT_IN_PART}]+@[^{_NOT_IN_PART}.]+(\.[^{_NOT_IN_PART}.]+)+$"
TOKEN_MAX: Final = 256  # tokens are 43 characters; anything much longer is not one


@attrs.frozen(kw_only=True)
class EmailRequest:
    """An address to send a verification or password-reset mail to."""

    email: str = schema_field(description="The account's email (trimmed, case-insensitive).",
                              pattern=EMAIL_PATTERN, maxLength=254, example="ada@example.com")


@attrs.frozen(kw_only=True)
class VerifyRequest:
    """The token of a verification link."""

    token: str = schema_field(description="The token the verification mail carried (single use).",
                              minLength=1, maxLength=TOKEN_MAX)


@attrs.frozen(kw_only=True)
class ResetPasswordRequest:
    """The token of a password-reset link and the new password."""

    token: str = schema_field(description="The token the reset mail carried (single use).",
                              minLength=1, maxLength=TOKEN_MAX)
    password: str = schema_field(description="The new password, 8 to 128 characters.", minLength=8, maxLength=128)


@attrs.frozen(kw_only=True)
class MailRequested:
    """The answer to a request for a mail: the same whether or not the address is known."""

    detail: str = schema_field(description="What happens next.",
                               example="If an account needs it, a mail is on its way to that address.")


MODELS: Final = (EmailRequest, VerifyRequest, ResetPasswordRequest, MailRequested)
