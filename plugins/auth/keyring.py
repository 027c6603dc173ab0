"""The keys that sign and verify tokens: the current one, and previous ones kept during a rotation.

Every token carries a ``kid`` (key id) in its header, derived from the key itself so that the
same key has the same kid on every instance and after every restart:

- RS256 / EdDSA: the RFC 7638 JWK thumbprint of the public key (what identity providers use;
  a verifier can recompute it from the JWK Set).
- HMAC: a truncated SHA-256 of a fixed label and the secret. It names the secret without
  revealing it: finding the secret from it is as hard as from any token's signature.

Verification picks the key by the token's kid, among the current and the previous keys; a
token without a kid (issued before kids existed) is checked against the current key only,
and an unknown kid is refused. The algorithm is pinned: a token's ``alg`` never chooses the
key type, and every key here is of the type JWT_ALGORITHM needs (the loaders refuse others).
Previous keys only verify: nothing here can sign with them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

HMAC_SECRET_MIN_BYTES: Final = 32  # RFC 7518 §3.2: a key at least as long as the hash
RSA_MIN_BITS: Final = 2048  # NIST SP 800-131A; PyJWT warns below it
_HMAC_KID_LABEL: Final = b"turnstile jwt kid v1\x00"
_HMAC_KID_BYTES: Final = 16
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


class KeyProblem(ValueError):
    """Key material that cannot be used; the message says why, and never holds key material."""


def is_hmac(algorithm: str) -> bool:
    return algorithm.startswith("HS")


# --- key ids and JWKs ---------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hmac_kid(secret: bytes) -> str:
    """The kid of an HMAC secret: 128 bits of SHA-256(label ‖ secret), base64url."""
    return _b64url(hashlib.sha256(_HMAC_KID_LABEL + secret).digest()[:_HMAC_KID_BYTES])


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members that hold a public key (RFC 7518 §6.3.1 for RSA, RFC 8037 §2 for OKP)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _b64url(_uint(numbers.n)), "e": _b64url(_uint(numbers.e))}
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    curve = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"
    return {"kty": "OKP", "crv": curve, "x": _b64url(raw)}


def _uint(value: int) -> bytes:
    """Base64urlUInt's octets: big-endian, as few as hold the value (at least one)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def thumbprint(jwk: Mapping[str, str]) -> str:
    """The RFC 7638 SHA-256 thumbprint: the required members only, sorted, no whitespace."""
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x")
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


# --- loading and checking key material ----------------------------------------------------------
def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"cannot be read ({exc.strerror or exc})"
        raise KeyProblem(msg) from None


def parse_secrets(data: bytes) -> tuple[bytes, ...]:
    """HMAC secrets, one a line; blank lines and ``#`` comments skipped, each line stripped.

    Raises:
        KeyProblem: not UTF-8 text, or lines shorter than HMAC_SECRET_MIN_BYTES (named by number).
    """
    try:
        text = data.decode()
    except UnicodeDecodeError:
        msg = "is not UTF-8 text"
        raise KeyProblem(msg) from None
    secrets: list[bytes] = []
    short: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        secret = line.strip()
        if not secret or secret.startswith("#"):
            continue
        if len(secret.encode()) < HMAC_SECRET_MIN_BYTES:
            short.append(str(number))
        secrets.append(secret.encode())
    if short:
        where = f"line {short[0]} is" if len(short) == 1 else f"lines {', '.join(short)} are"
        msg = f"{where} shorter than {HMAC_SECRET_MIN_BYTES} bytes, the least an HMAC secret may be (RFC 7518 §3.2)"
        raise KeyProblem(msg)
    return tuple(secrets)


def pem_blocks(data: bytes) -> list[bytes]:
    """The PEM blocks of a file of concatenated PEMs (text around them is ignored, as OpenSSL does).

    Raises:
        KeyProblem: something other than whitespace, yet no PEM block.
    """
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(data)]
    if not blocks and data.strip():
        msg = "holds no PEM block (-----BEGIN PUBLIC KEY----- …)"
        raise KeyProblem(msg)
    return blocks


def load_public_key(pem: bytes, algorithm: str) -> PublicKey:
    """One PEM public key of the type `algorithm` signs with.

    Raises:
        KeyProblem: a private key, not a public key, another key type, or an RSA key too short.
    """
    if b"PRIVATE KEY-----" in pem:
        msg = "is a private key: give the public key only"
        raise KeyProblem(msg)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        msg = "is not a PEM public key"
        raise KeyProblem(msg) from None
    return _checked(key, algorithm)


def load_private_key(pem: bytes, algorithm: str) -> PrivateKey:
    """One unencrypted PEM private key of the type `algorithm` signs with.

    Raises:
        KeyProblem: encrypted, not a private key, another key type, or an RSA key too short.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        msg = "is encrypted: give an unencrypted PEM (keep it in a Secret instead)"
        raise KeyProblem(msg) from None
    except (ValueError, UnsupportedAlgorithm):
        msg = "is not a PEM private key"
        raise KeyProblem(msg) from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise KeyProblem(_wrong_type(_kind(key.public_key()), algorithm))
    _checked(key.public_key(), algorithm)
    return key


def _checked(key: Any, algorithm: str) -> PublicKey:
    if algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            msg = f"is a {key.key_size}-bit RSA key; RS256 needs at least {RSA_MIN_BITS} bits"
            raise KeyProblem(msg)
        return key
    if algorithm == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key
    raise KeyProblem(_wrong_type(_kind(key), algorithm))


def _kind(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "an Ed25519/Ed448 key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "an EC key"
    return "another kind of key"


def _wrong_type(kind: str, algorithm: str) -> str:
    wanted = {"RS256": "an RSA key", "EdDSA": "an Ed25519 or Ed448 key"}.get(algorithm, "no key file")
    return f"is {kind}; JWT_ALGORITHM={algorithm} needs {wanted}"


# --- the keyring ------------------------------------------------------------------------------
@final
@attrs.frozen
class VerificationKey:
    """A key that verifies tokens: its kid, the key PyJWT takes, and (RS256/EdDSA) its public JWK."""

    kid: str
    key: bytes | PublicKey
    jwk: dict[str, str] | None


@final
@attrs.frozen
class Keyring:
    """The signing key and every verification key (current first), by kid."""

    algorithm: str
    signing_key: bytes | PrivateKey = attrs.field(repr=False)
    signing_kid: str
    current_kid: str
    verification: Mapping[str, VerificationKey] = attrs.field(repr=False)

    def verification_key(self, kid: str | None) -> VerificationKey | None:
        """The key for a token's kid; without a kid, the current key (tokens issued before kids)."""
        return self.verification.get(self.current_kid if kid is None else kid)

    def jwk_set(self) -> dict[str, list[dict[str, str]]] | None:
        """The RFC 7517 JWK Set of the public keys (current first); None for HMAC: secrets are never published."""
        if is_hmac(self.algorithm):
            return None
        return {"keys": [entry.jwk for entry in self.verification.values() if entry.jwk is not None]}


def keyring_of(
    algorithm: str, signing_key: str | bytes, verify_key: str | bytes, previous: Sequence[str | bytes] = ()
) -> Keyring:
    """The keyring of an HMAC secret (signing and verifying) or of PEM private and public keys,
    with `previous` secrets or PEM public keys that still verify.

    Raises:
        KeyProblem: a PEM that does not parse or is of the wrong type for `algorithm`.
    """
    if is_hmac(algorithm):
        secret = _bytes(verify_key)
        current = VerificationKey(hmac_kid(secret), secret, None)
        others = [VerificationKey(hmac_kid(_bytes(old)), _bytes(old), None) for old in previous]
        signing: bytes | PrivateKey = _bytes(signing_key)
        signing_kid = hmac_kid(_bytes(signing_key))
    else:
        private = load_private_key(_bytes(signing_key), algorithm)
        current = _public_entry(load_public_key(_bytes(verify_key), algorithm), algorithm)
        others = [_public_entry(load_public_key(_bytes(old), algorithm), algorithm) for old in previous]
        signing, signing_kid = private, thumbprint(public_jwk(private.public_key()))
    by_kid: dict[str, VerificationKey] = {current.kid: current}
    for entry in others:
        by_kid.setdefault(entry.kid, entry)
    return Keyring(algorithm, signing, signing_kid, current.kid, by_kid)


def _public_entry(key: PublicKey, algorithm: str) -> VerificationKey:
    jwk = public_jwk(key)
    kid = thumbprint(jwk)
    return VerificationKey(kid, key, {"kid": kid, **jwk, "alg": algorithm, "use": "sig"})


def _bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key
