from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from plugins.auth.settings import TokenSettings
from plugins.auth.tokens import ACCESS, REFRESH, TokenError, Tokens, tokens_for
from tests.plugins.auth.conftest import SECRET


def hs_tokens(**changes: Any) -> Tokens:
    kwargs: dict[str, Any] = {
        "algorithm": "HS256", "signing_key": SECRET, "verify_key": SECRET, "issuer": "turnstile",
        "audience": "turnstile-api", "access_ttl_s": 900, "refresh_ttl_s": 3600,
    }
    kwargs.update(changes)
    return Tokens(**kwargs)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign_hs256(payload: dict[str, Any], key: bytes) -> str:
    """HS256 by hand: PyJWT itself refuses a PEM key as an HMAC secret."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def test_issue_then_verify_access() -> None:
    tokens = hs_tokens()
    issued = tokens.issue_access(7, ("user", "admin"), "fam-1")
    claims = tokens.verify(issued.token, ACCESS)
    assert (claims.user_id, claims.roles, claims.type) == (7, ("user", "admin"), "access")
    assert claims.family == "fam-1"  # the session it belongs to
    raw = jwt.decode(issued.token, SECRET, algorithms=["HS256"], audience="turnstile-api")
    assert set(raw) == {"sub", "roles", "exp", "iat", "jti", "iss", "aud", "type", "fam"}
    assert raw["sub"] == "7"


def test_refresh_tokens_carry_their_family() -> None:
    tokens = hs_tokens()
    first = tokens.issue_refresh(7, ("user",))
    again = tokens.issue_refresh(7, ("user",), first.claims.family)
    assert first.claims.family
    assert tokens.verify(again.token, REFRESH).family == first.claims.family
    assert first.claims.jti != again.claims.jti


def test_token_types_do_not_mix() -> None:
    tokens = hs_tokens()
    with pytest.raises(TokenError):
        tokens.verify(tokens.issue_refresh(7, ()).token, ACCESS)
    with pytest.raises(TokenError):
        tokens.verify(tokens.issue_access(7, (), "fam-1").token, REFRESH)


def test_expired_token_is_refused() -> None:
    old = hs_tokens(clock=lambda: time.time() - 1000).issue_access(7, (), "fam-1")
    with pytest.raises(TokenError):
        hs_tokens().verify(old.token, ACCESS)


def test_cached_token_still_expires() -> None:
    now = [time.time()]
    tokens = hs_tokens(clock=lambda: now[0])
    issued = tokens.issue_access(7, (), "fam-1")
    tokens.verify(issued.token, ACCESS)
    now[0] += 901
    with pytest.raises(TokenError):
        tokens.verify(issued.token, ACCESS)


def test_cache_is_bounded() -> None:
    tokens = hs_tokens(cache_size=2)
    for _ in range(5):
        tokens.verify(tokens.issue_access(7, (), "fam-1").token, ACCESS)
    assert len(tokens._cache) == 2


def test_tampered_token_is_refused() -> None:
    tokens = hs_tokens()
    head, body, sig = tokens.issue_access(7, ("user",), "fam-1").token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["roles"] = ["admin"]
    with pytest.raises(TokenError):
        tokens.verify(f"{head}.{_b64(json.dumps(payload).encode())}.{sig}", ACCESS)


def test_alg_none_is_refused() -> None:
    tokens = hs_tokens()
    payload = jwt.decode(tokens.issue_access(7, (), "fam-1").token, options={"verify_signature": False})
    with pytest.raises(TokenError):
        tokens.verify(jwt.encode(payload, "", algorithm="none"), ACCESS)


@pytest.mark.parametrize("change", [{"audience": "other"}, {"issuer": "other"}, {"signing_key": "k" * 48}])
def test_wrong_audience_issuer_or_key_is_refused(change: dict[str, Any]) -> None:
    foreign = hs_tokens(**change).issue_access(7, (), "fam-1")
    with pytest.raises(TokenError):
        hs_tokens().verify(foreign.token, ACCESS)


def test_missing_claim_is_refused() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "7", "exp": now + 60, "iat": now, "iss": "turnstile", "aud": "turnstile-api",
                        "type": "access", "roles": []}, SECRET, algorithm="HS256")  # no jti
    with pytest.raises(TokenError):
        hs_tokens().verify(token, ACCESS)


def _write_keys(tmp_path: Path, private: Any) -> tuple[Path, Path]:
    priv, pub = tmp_path / "private.pem", tmp_path / "public.pem"
    priv.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pub.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def _key_settings(tmp_path: Path, algorithm: str, private: Any) -> TokenSettings:
    priv, pub = _write_keys(tmp_path, private)
    return TokenSettings(algorithm=algorithm, private_key_file=priv, public_key_file=pub)


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_asymmetric_algorithms_from_key_files(tmp_path: Path, algorithm: str) -> None:
    private = rsa.generate_private_key(65537, 2048) if algorithm == "RS256" else ed25519.Ed25519PrivateKey.generate()
    tokens = tokens_for(_key_settings(tmp_path, algorithm, private))
    assert tokens.verify(tokens.issue_access(3, ("user",), "fam-1").token, ACCESS).user_id == 3
    with pytest.raises(TokenError):  # an HS256 token never passes an asymmetric verifier
        tokens.verify(hs_tokens().issue_access(3, (), "fam-1").token, ACCESS)


def test_hmac_signed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    """Algorithm confusion: the attacker knows the RSA public key and signs HS256 with it."""
    settings = _key_settings(tmp_path, "RS256", rsa.generate_private_key(65537, 2048))
    tokens = tokens_for(settings)
    assert settings.public_key_file is not None
    payload = jwt.decode(tokens.issue_access(3, (), "fam-1").token, options={"verify_signature": False})
    payload["roles"] = ["admin"]
    forged = _sign_hs256(payload, settings.public_key_file.read_bytes())
    with pytest.raises(TokenError):
        tokens.verify(forged, ACCESS)


def test_hs256_from_settings(token_settings: TokenSettings) -> None:
    tokens = tokens_for(token_settings)
    assert tokens.algorithm == "HS256"
    assert tokens.verify(tokens.issue_access(1, (), "fam-1").token, ACCESS).user_id == 1
