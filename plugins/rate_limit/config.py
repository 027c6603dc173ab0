"""The `rate-limit` step's settings: what TOML supplies, validated once at load time."""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs.validators import gt

from app import StepKind

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_BODY_PART = r"body\.[A-Za-z_][A-Za-z0-9_]*"
_PART = rf"(client|actor|{_BODY_PART})"
_PER = re.compile(rf"^{_PART}(\+{_PART})*$")
_WHEN = re.compile(rf"^{_BODY_PART}$")
# The answers a `count = "failures"` limiter counts: a refused credential or permission.
FAILURE_STATUSES = frozenset({401, 403})


def _check_name(_inst: Any, _attr: attrs.Attribute[str], value: str) -> None:
    if not _NAME.match(value):
        msg = f"name must be lower-case letters, digits, '-' or '_', got {value!r}"
        raise ValueError(msg)


def _check_per(_inst: Any, _attr: attrs.Attribute[str], value: str) -> None:
    if not _PER.match(value):
        msg = f'per must be "client", "actor", "body.<field>" or several joined by "+", got {value!r}'
        raise ValueError(msg)


def _check_when(_inst: Any, _attr: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not _WHEN.match(value):
        msg = f'when must be "body.<field>", got {value!r}'
        raise ValueError(msg)


def _check_count(_inst: Any, _attr: attrs.Attribute[str], value: str) -> None:
    if value not in ("requests", "failures"):
        msg = f'count must be "requests" or "failures", got {value!r}'
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class RateLimitConfig:
    """`{ use = "rate-limit", name = "login-client", per = "client", limit = 30, window_s = 300 }`

    name: the limiter's name; steps with the same name share one counter per key
      (Redis keys ``turnstile:rl:<name>:<hash of the key>``).
    per: what is counted, one key per distinct value. ``"client"``: the client's address
      (the socket's peer, or with TRUSTED_PROXIES the rightmost address of X-Forwarded-For
      that is not a trusted proxy). ``"actor"``: the authenticated caller's user id (after
      `auth`). ``"body.<field>"``: that field of the request body *as validated and
      normalised* (so an email counts once however it is spelled, and a form's `username`
      is the email it stands for). Join parts with ``+`` to count their combination, e.g.
      ``"client+body.email"``. A limiter keyed on the body stands after the rules gate
      (body validation and the `check_request` hooks), so it must come after every guard;
      a request without one of its parts (no actor, a body field absent) is not counted.
    count: ``"requests"`` counts every request; ``"failures"`` counts only answers 401 and
      403 (a refused password, say): each request holds a hit while it runs, so a burst of
      parallel guesses cannot overshoot the limit, and gives it back when it succeeds.
    when: ``"body.<field>"``: count only the requests whose validated body carries that field,
      e.g. ``"body.current_password"`` for re-authentications: a password is only guessed where
      one is sent, and a caller's other changes (an admin's parallel edits, say) neither hold a
      hit nor cost a Redis round trip.
    limit: hits allowed per key in one window; the next request gets 429 with Retry-After.
    window_s: the window's length in seconds (a fixed window that starts at a key's first hit).
    """

    name: str = attrs.field(validator=_check_name)
    limit: int = attrs.field(validator=gt(0))
    window_s: int = attrs.field(validator=gt(0))
    per: str = attrs.field(default="client", validator=_check_per)
    count: str = attrs.field(default="requests", validator=_check_count)
    when: str | None = attrs.field(default=None, validator=_check_when)

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of the key, e.g. ``("client", "body.email")``."""
        return tuple(self.per.split("+"))

    @property
    def body_fields(self) -> tuple[str, ...]:
        """The body fields the limiter reads: those of its key, and `when`'s."""
        named = (*self.parts, self.when) if self.when is not None else self.parts
        return tuple(part.removeprefix("body.") for part in named if part.startswith("body."))


def kind_of(config: RateLimitConfig) -> StepKind:
    """A GUARD (before body validation) unless its key needs the validated body."""
    return StepKind.WRAPPER if config.body_fields else StepKind.GUARD
