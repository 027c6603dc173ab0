"""The auth plugin's settings: the JWT_* and token lifetime variables, and the argon2 costs.

The variable names are the ones operators already set (contract §3): ``JWT_*`` under the
class's prefix, ``ACCESS_TOKEN_TTL_S`` and ``REFRESH_TOKEN_TTL_S`` named as they always were.
Key files are read and parsed by the start-up check, so a key that cannot sign or verify is a
line of the start-up report, not a failure at the first login.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Final, TypeVar

import attrs

from app import positive_int, setting
from plugins.auth.keyring import (
    HMAC_SECRET_MIN_BYTES,
    KeyProblem,
    PrivateKey,
    PublicKey,
    load_private_key,
    load_public_key,
    parse_secrets,
    pem_blocks,
    read_file,
)

T = TypeVar("T")

ALGORITHMS: Final = ("HS256", "HS384", "HS512", "RS256", "EdDSA")


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
    previous_secrets_file: Path | None = setting(
        default=None,
        description=f"HMAC secrets that still verify (never sign) during a rotation: one a line, each at least "
        f"{HMAC_SECRET_MIN_BYTES} bytes; blank lines and # comments ignored",
    )
    previous_public_keys_file: Path | None = setting(
        default=None,
        description="PEM public keys (concatenated) that still verify (never sign) during a rotation (RS256, EdDSA)",
    )
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
        """Usable keys for the algorithm, previous ones included (one line per bad variable);
        in production, a real secret."""
        if self.hmac:
            if 0 < len(self.secret.encode()) < HMAC_SECRET_MIN_BYTES:
                # the value came from one of the two (both set is a problem of its own)
                yield (f"JWT_SECRET (or the file JWT_SECRET_FILE names): must be at least {HMAC_SECRET_MIN_BYTES} "
                       "bytes for HMAC signing (RFC 7518 §3.2)")
            if production and not self.secret:
                yield "JWT_SECRET or JWT_SECRET_FILE: required when TURNSTILE_ENV=production"
            if self.previous_public_keys_file is not None:
                yield (f"JWT_PREVIOUS_PUBLIC_KEYS_FILE: {self.algorithm} verifies with secrets; "
                       "list previous ones in JWT_PREVIOUS_SECRETS_FILE")
            _, problem = _load("JWT_PREVIOUS_SECRETS_FILE", self.previous_secrets_file, parse_secrets)
            yield from problem
            return
        if self.previous_secrets_file is not None:
            yield (f"JWT_PREVIOUS_SECRETS_FILE: {self.algorithm} verifies with public keys; "
                   "list previous ones in JWT_PREVIOUS_PUBLIC_KEYS_FILE")
        yield from self._key_pair_problems()
        _, problem = _load("JWT_PREVIOUS_PUBLIC_KEYS_FILE", self.previous_public_keys_file,
                           lambda data: _public_keys(data, self.algorithm))
        yield from problem

    def _key_pair_problems(self) -> Iterator[str]:
        """The signing key pair: each file readable and of the algorithm's type, and one pair."""
        private: PrivateKey | None = None
        public: PublicKey | None = None
        if _is_file(self.private_key_file):
            private, problems = _load("JWT_PRIVATE_KEY_FILE", self.private_key_file,
                                      lambda data: load_private_key(data, self.algorithm))
            yield from problems
        else:
            yield f"JWT_PRIVATE_KEY_FILE: {self.algorithm} needs a readable key file"
        if _is_file(self.public_key_file):
            public, problems = _load("JWT_PUBLIC_KEY_FILE", self.public_key_file,
                                     lambda data: load_public_key(data, self.algorithm))
            yield from problems
        else:
            yield f"JWT_PUBLIC_KEY_FILE: {self.algorithm} needs a readable key file"
        if private is not None and public is not None and private.public_key() != public:
            yield f"JWT_PUBLIC_KEY_FILE={str(self.public_key_file)!r}: is not the public half of JWT_PRIVATE_KEY_FILE"

    def embedded_defaults(self) -> list[str]:
        return ["a random development JWT secret"] if self.hmac and not self.secret else []


def _load(variable: str, path: Path | None, parse: Callable[[bytes], T]) -> tuple[T | None, list[str]]:
    """What `parse` makes of the file `variable` names (None when unset), or its one problem."""
    if path is None:
        return None, []
    try:
        return parse(read_file(path)), []
    except KeyProblem as exc:
        return None, [f"{variable}={str(path)!r}: {exc}"]


def _is_file(path: Path | None) -> bool:
    return path is not None and path.is_file()


def _public_keys(data: bytes, algorithm: str) -> list[PublicKey]:
    """Every PEM public key of a file; the problems of all of them in one message."""
    keys: list[PublicKey] = []
    problems: list[str] = []
    for number, block in enumerate(pem_blocks(data), start=1):
        try:
            keys.append(load_public_key(block, algorithm))
        except KeyProblem as exc:
            problems.append(f"key {number} {exc}")
    if problems:
        raise KeyProblem("; ".join(problems))
    return keys


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
