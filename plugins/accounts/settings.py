"""The accounts plugin's settings: how long the tokens in mails live.

| variable | default |
| --- | --- |
| `ACCOUNTS_VERIFY_TOKEN_TTL_S` | 86400 (24 h): a verification link's lifetime |
| `ACCOUNTS_RESET_TOKEN_TTL_S` | 3600 (1 h): a password-reset link's lifetime |

Read once at start-up, one message per bad variable; kept in this one class so the
plugin-owned settings hook can take it over as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from app import SettingsError

MAX_TTL_S: Final = 30 * 24 * 3600  # a link older than a month is a link someone else found


@attrs.frozen(kw_only=True)
class AccountsSettings:
    verify_token_ttl_s: int = 24 * 3600
    reset_token_ttl_s: int = 3600


def load_accounts_settings(environ: Mapping[str, str]) -> AccountsSettings:
    """Raises SettingsError with one message per bad variable."""
    problems: list[str] = []
    values: dict[str, int] = {}
    for name, field in (("ACCOUNTS_VERIFY_TOKEN_TTL_S", "verify_token_ttl_s"),
                        ("ACCOUNTS_RESET_TOKEN_TTL_S", "reset_token_ttl_s")):
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not 0 < int(raw) <= MAX_TTL_S:
            problems.append(f"{name}={raw!r}: expected a whole number of seconds from 1 to {MAX_TTL_S}")
            continue
        values[field] = int(raw)
    if problems:
        raise SettingsError(problems)
    return AccountsSettings(**values)
