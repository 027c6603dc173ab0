"""The `rate-limit` step's settings: what TOML supplies, validated once at load time."""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs.validators import gt

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_PER = re.compile(r"^(client|body\.[A-Za-z_][A-Za-z0-9_]*)$")


def _check_name(_inst: Any, _attr: attrs.Attribute[str], value: str) -> None:
    if not _NAME.match(value):
        msg = f"name must be lower-case letters, digits, '-' or '_', got {value!r}"
        raise ValueError(msg)


def _check_per(_inst: Any, _attr: attrs.Attribute[str], value: str) -> None:
    if not _PER.match(value):
        msg = f'per must be "client" or "body.<field>", got {value!r}'
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class RateLimitConfig:
    """`{ use = "rate-limit", name = "login-email", per = "body.email", limit = 5, window_s = 60 }`

    name: the limiter's name; steps with the same name share one counter per key
      (Redis keys ``turnstile:rl:<name>:<hash of the value>``).
    per: what is counted. ``"client"``: the client's address. ``"body.<field>"``: that field
      of the request body (JSON, or a form; for ``body.email`` a form's ``username`` counts
      too, as in the OAuth2 password form). String values are trimmed and lower-cased. A
      request without the field, or whose body does not parse, is not counted: the body
      validation after the guards answers it with 400/415/422.
    limit: requests allowed per key in one window; the next one gets 429 with Retry-After.
    window_s: the window's length in seconds (a fixed window that starts at a key's first hit).
    trust_forwarded: with ``per = "client"``, take the address from the last
      ``X-Forwarded-For`` hop (the one the trusted proxy in front of us added) instead of
      the socket's peer. Leave false unless a proxy you control always sets the header:
      otherwise any client can pick its own key.
    """

    name: str = attrs.field(validator=_check_name)
    limit: int = attrs.field(validator=gt(0))
    window_s: int = attrs.field(validator=gt(0))
    per: str = attrs.field(default="client", validator=_check_per)
    trust_forwarded: bool = False

    @property
    def body_field(self) -> str | None:
        """The body field counted, or None when counting clients."""
        return self.per.removeprefix("body.") if self.per.startswith("body.") else None
