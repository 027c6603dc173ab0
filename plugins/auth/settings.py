"""The auth plugin's settings: the JWT_* and token lifetime variables, and the argon2 costs.

The variable names are the ones operators already set (contract §3): ``JWT_*`` under the
class's prefix, ``ACCESS_TOKEN_TTL_S`` and ``REFRESH_TOKEN_TTL_S`` named as they always were.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Final

import attrs

from app import positive_int, setting

ALGORITHMS: Final = ("HS256", "HS384", "HS512", "RS256", "EdDSA")
HMAC_SECRET_MIN_BYTES: Final = 32  # RFC 7518 §3.2: a key at least as long as the hash


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        msg = "a whole number, 0 or more"
        raise ValueError(msg)
    return number


def _algorithm(value: str) -> str:
    canonical = {name.upper(): name for name in ALGORITHMS}.get(value.strip().upper())
    if canonical is None:
        msg = f"one of {', '.join(ALGORITHMS)}"
        raise ValueError(msg)
    return canonical


@attrs.frozen(kw_only=True)
class TokenSettings:
    """How tokens are signed, checked and how long they live."""

    env_prefix: ClassVar[str] = "JWT_"

    secret: str = setting(
        default="", secret=True,
        description=f"HMAC signing secret, at least {HMAC_SECRET_MIN_BYTES} bytes; unset: a random one per "
        "process (development only, refused in production)",
    )
    algorithm: str = setting(default="HS256", parse=_algorithm, description=f"one of {', '.join(ALGORITHMS)}")
    private_key_file: Path | None = setting(default=None, description="PEM private key that signs (RS256, EdDSA)")
    public_key_file: Path | None = setting(default=None, description="PEM public key that verifies (RS256, EdDSA)")
    issuer: str = setting(default="turnstile", description="the `iss` claim issued and required")
    audience: str = setting(default="turnstile-api", description="the `aud` claim issued and required")
    access_token_ttl_s: int = setting(
        default=900, env="ACCESS_TOKEN_TTL_S", parse=positive_int, description="access token lifetime, seconds"
    )
    refresh_token_ttl_s: int = setting(
        default=14 * 24 * 3600, env="REFRESH_TOKEN_TTL_S", parse=positive_int,
        description="refresh token (session) lifetime, seconds",
    )

    @property
    def hmac(self) -> bool:
        return self.algorithm.startswith("HS")

    def check(self, production: bool) -> Iterator[str]:
        """A usable key for the algorithm; in production, a real secret."""
        if self.hmac:
            if 0 < len(self.secret.encode()) < HMAC_SECRET_MIN_BYTES:
                yield f"JWT_SECRET: must be at least {HMAC_SECRET_MIN_BYTES} bytes for HMAC signing (RFC 7518 §3.2)"
            if production and not self.secret:
                yield "JWT_SECRET or JWT_SECRET_FILE: required when TURNSTILE_ENV=production"
            return
        for name, path in (("JWT_PRIVATE_KEY_FILE", self.private_key_file),
                           ("JWT_PUBLIC_KEY_FILE", self.public_key_file)):
            if path is None or not path.is_file():
                yield f"{name}: {self.algorithm} needs a readable key file"

    def embedded_defaults(self) -> list[str]:
        return ["a random development JWT secret"] if self.hmac and not self.secret else []


@attrs.frozen(kw_only=True)
class PasswordSettings:
    """argon2id's costs (OWASP's minimums are far below the defaults); tests may use 1, 8, 1."""

    env_prefix: ClassVar[str] = "ARGON2_"

    time_cost: int = setting(default=3, parse=positive_int, description="argon2id iterations")
    memory_kib: int = setting(default=65536, parse=positive_int, description="argon2id memory per hash, KiB")
    max_concurrent: int = setting(
        default=0, parse=_non_negative_int,
        description="hashes run at once (0: the cores the process may use, its CPU quota applied)",
    )
    queue: int | None = setting(
        default=None, parse=_non_negative_int,
        description="hashes that may wait for a free core before the next is a 503 (default: twice max_concurrent)",
    )
    parallelism: int = setting(default=4, parse=positive_int, description="argon2id lanes")
