"""ACME's settings: ACME_* variables, checked at start-up with Turnstile's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs

from app import hookimpl, setting


@attrs.frozen(kw_only=True)
class AcmeSettings:
    """What ACME's operators may set. Every feature is off until its variable is set."""

    env_prefix: ClassVar[str] = "ACME_"

    allowed_email_domains: tuple[str, ...] = setting(default=(), description="lower-case domains that may register")
    support_url: str | None = setting(default=None, description="help link added to `acme`-tagged answers")
    maintenance: bool = setting(default=False, description="1: acme-maintenance steps answer 503")
    audit_log: Path | None = setting(default=None, description="file acme-audit appends to; unset: stderr")


@hookimpl
def register_settings() -> list[type[Any]]:
    return [AcmeSettings]
