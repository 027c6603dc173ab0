"""Key ids, JWKs and the keyring: kids are the standard thumbprints, stable and never revealing
a secret; previous keys verify and never sign; the kid, not the token's alg, picks the key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from plugins.auth.keyring import (
    KeyProblem,
    hmac_kid,
    load_private_key,
    load_public_key,
    parse_secrets,
    pem_blocks,
    public_jwk,
    thumbprint,
)
from plugins.auth.tokens import ACCESS, TokenError, Tokens

OLD_SECRET = "old-secret-of-the-keyring-tests-0123456789"
NEW_SECRET = "new-secret-of-the-keyring-tests-0123456789"

# RFC 7638 §3.1 and RFC 8037 appendix A.3: the published keys and their thumbprints.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
    "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZ"
    "Hzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kE"
    "gU8awapJzKnqDKgw"
)
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pem(key: Any) -> bytes:
    if hasattr(key, "private_bytes"):
        return bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def hs(signing: str, previous: tuple[str, ...] = (), verify: str | None = None) -> Tokens:
    return Tokens(algorithm="HS256", signing_key=signing, verify_key=verify or signing, previous_keys=previous,
                  issuer="turnstile", audience="turnstile-api", access_ttl_s=900, refresh_ttl_s=3600)


def test_rsa_kid_is_the_rfc_7638_thumbprint() -> None:
    key = rsa.RSAPublicNumbers(int.from_bytes(_unb64("AQAB"), "big"), int.from_bytes(_unb64(RFC7638_N), "big"))
    jwk = public_jwk(key.public_key())
    assert jwk == {"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ed25519_kid_is_the_rfc_8037_thumbprint() -> None:
    jwk = public_jwk(ed25519.Ed25519PublicKey.from_public_bytes(_unb64(RFC8037_X)))
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_an_hmac_kid_is_stable_and_reveals_nothing_of_the_secret() -> None:
    kid = hmac_kid(OLD_SECRET.encode())
    assert kid == hmac_kid(OLD_SECRET.encode())  # every instance, every restart
    assert kid != hmac_kid(NEW_SECRET.encode())
    assert len(_unb64(kid)) == 16
    assert OLD_SECRET[:8] not in kid
    header = jwt.get_unverified_header(hs(OLD_SECRET).issue_access(1, (), "fam").token)
    assert header == {"alg": "HS256", "kid": kid, "typ": "JWT"}


def test_previous_keys_verify_and_never_sign() -> None:
    old = hs(OLD_SECRET).issue_access(1, (), "fam").token
    rotated = hs(NEW_SECRET, previous=(OLD_SECRET,))
    assert rotated.verify(old, ACCESS).user_id == 1
    new = rotated.issue_access(1, (), "fam").token
    assert jwt.get_unverified_header(new)["kid"] == hmac_kid(NEW_SECRET.encode())
    jwt.decode(new, NEW_SECRET, algorithms=["HS256"], audience="turnstile-api")
    with pytest.raises(TokenError):  # removed: refused
        hs(NEW_SECRET).verify(old, ACCESS)


def _payload() -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "1", "roles": [], "iat": now, "exp": now + 60, "jti": "j", "iss": "turnstile",
            "aud": "turnstile-api", "type": "access", "fam": "fam"}


def test_a_token_without_a_kid_is_checked_against_the_current_key_only() -> None:
    legacy_current = jwt.encode(_payload(), NEW_SECRET, algorithm="HS256")
    legacy_previous = jwt.encode(_payload(), OLD_SECRET, algorithm="HS256")
    rotated = hs(NEW_SECRET, previous=(OLD_SECRET,))
    assert rotated.verify(legacy_current, ACCESS).user_id == 1
    with pytest.raises(TokenError):
        rotated.verify(legacy_previous, ACCESS)


def _hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], secret: str) -> str:
    """PyJWT refuses to write a malformed header; an attacker does not."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("kid", ["unknown", 7, "", None, ["a"]])
def test_an_unknown_or_malformed_kid_is_refused(kid: object) -> None:
    token = _hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": kid}, _payload(), NEW_SECRET)
    with pytest.raises(TokenError):
        hs(NEW_SECRET).verify(token, ACCESS)


def test_secrets_file_lines() -> None:
    text = f"# rotated 2026-01\n\n  {OLD_SECRET}  \n{NEW_SECRET}\n"
    assert parse_secrets(text.encode()) == (OLD_SECRET.encode(), NEW_SECRET.encode())
    with pytest.raises(KeyProblem, match=r"^lines 2, 4 are shorter than 32 bytes"):
        parse_secrets(f"{OLD_SECRET}\nshort\n# comment\ntoo short too\n".encode())
    with pytest.raises(KeyProblem, match="not UTF-8"):
        parse_secrets(b"\xff" * 40)


def test_pem_files_hold_concatenated_keys() -> None:
    one, two = _pem(ed25519.Ed25519PrivateKey.generate().public_key()), _pem(rsa.generate_private_key(65537, 2048))
    assert pem_blocks(b"# first\n" + one + b"\nsecond:\n" + two) == [one.strip(), two.strip()]
    assert pem_blocks(b"\n") == []
    with pytest.raises(KeyProblem, match="no PEM block"):
        pem_blocks(b"not a pem")


@pytest.mark.parametrize(("pem", "algorithm", "problem"), [
    (lambda: _pem(rsa.generate_private_key(65537, 2048)), "RS256", "is a private key: give the public key only"),
    (lambda: b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "RS256", "is not a PEM public key"),
    (lambda: _pem(ed25519.Ed25519PrivateKey.generate().public_key()), "RS256",
     "is an Ed25519/Ed448 key; JWT_ALGORITHM=RS256 needs an RSA key"),
    (lambda: _pem(rsa.generate_private_key(65537, 2048).public_key()), "EdDSA",
     "is an RSA key; JWT_ALGORITHM=EdDSA needs an Ed25519 or Ed448 key"),
    (lambda: _pem(ec.generate_private_key(ec.SECP256R1()).public_key()), "EdDSA",
     "is an EC key; JWT_ALGORITHM=EdDSA needs an Ed25519 or Ed448 key"),
    (lambda: _pem(rsa.generate_private_key(65537, 1024).public_key()), "RS256",
     "is a 1024-bit RSA key; RS256 needs at least 2048 bits"),
])
def test_public_keys_of_the_wrong_kind_are_refused(pem: Any, algorithm: str, problem: str) -> None:
    with pytest.raises(KeyProblem) as caught:
        load_public_key(pem(), algorithm)
    assert str(caught.value) == problem


def test_private_keys_of_the_wrong_kind_are_refused() -> None:
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"))
    with pytest.raises(KeyProblem, match="is encrypted"):
        load_private_key(encrypted, "EdDSA")
    with pytest.raises(KeyProblem, match="is not a PEM private key"):
        load_private_key(_pem(ed25519.Ed25519PrivateKey.generate().public_key()), "EdDSA")
    with pytest.raises(KeyProblem, match="is an RSA key; JWT_ALGORITHM=EdDSA"):
        load_private_key(_pem(rsa.generate_private_key(65537, 2048)), "EdDSA")
