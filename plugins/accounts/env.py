"""The accounts plugin's variables as plugin-owned settings (`register_settings`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import attrs

from app import SettingsError, setting
from plugins.accounts.settings import AccountsSettings, load_accounts_settings

_DEFAULTS = AccountsSettings()


@attrs.frozen(kw_only=True)
class AccountsEnv:
    """ACCOUNTS_VERIFY_TOKEN_TTL_S and ACCOUNTS_RESET_TOKEN_TTL_S (seconds a link works)."""

    env_prefix: ClassVar[str] = "ACCOUNTS_"

    # Defaults as `turnstile plugins` shows them; `settings` checks every value, these included.
    verify_token_ttl_s: str = setting(default=str(_DEFAULTS.verify_token_ttl_s),
                                      description="a verification link's lifetime in seconds")
    reset_token_ttl_s: str = setting(default=str(_DEFAULTS.reset_token_ttl_s),
                                     description="a password-reset link's lifetime in seconds")

    def settings(self) -> AccountsSettings:
        """What the variables say (SettingsError when they are wrong)."""
        environ = {f"ACCOUNTS_{name.upper()}": value for name, value in attrs.asdict(self).items() if value}
        return load_accounts_settings(environ)

    def check(self, production: bool) -> Iterable[str]:
        try:
            self.settings()
        except SettingsError as exc:
            return exc.problems
        return []
