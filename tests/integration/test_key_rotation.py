"""Rotating the signing key logs nobody out (contract §3, §4): previous keys still verify, every
token names its key (`kid`), the JWK Set publishes the public ones, and the algorithm stays
pinned. Each "restart" is a new instance on the same data service and Redis, as a rollout is."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from openapi_spec_validator import validate

from tests.integration.conftest import Client, StackFactory, assert_problem, bearer, login, register

ASYMMETRIC = ["RS256", "EdDSA"]
ALL = ["HS256", *ASYMMETRIC]
INVALID = "The bearer token is invalid or has expired."
PASSWORD = "correct-horse-1"


class Keys:
    """Named signing keys of one algorithm, written where the service reads them."""

    def __init__(self, algorithm: str, directory: Path) -> None:
        self.algorithm = algorithm
        self.directory = directory
        self._secrets: dict[str, str] = {}
        self._private: dict[str, Any] = {}

    def env(self, current: str, previous: tuple[str, ...] = ()) -> dict[str, str]:
        """The variables of an instance that signs with `current` and still verifies `previous`."""
        env = {"JWT_ALGORITHM": self.algorithm}
        if self.algorithm.startswith("HS"):
            env["JWT_SECRET"] = self.secret(current)
            if previous:
                env["JWT_PREVIOUS_SECRETS_FILE"] = self._file(
                    f"previous-{'-'.join(previous)}", "".join(f"{self.secret(n)}\n" for n in previous).encode())
            return env
        env["JWT_PRIVATE_KEY_FILE"] = self._file(f"{current}.private.pem", self._private_pem(current))
        env["JWT_PUBLIC_KEY_FILE"] = self._file(f"{current}.public.pem", self.public_pem(current))
        if previous:
            env["JWT_PREVIOUS_PUBLIC_KEYS_FILE"] = self._file(
                f"previous-{'-'.join(previous)}.pem", b"".join(self.public_pem(n) for n in previous))
        return env

    def secret(self, name: str) -> str:
        return self._secrets.setdefault(name, secrets.token_urlsafe(48))

    def private(self, name: str) -> Any:
        if name not in self._private:
            self._private[name] = (rsa.generate_private_key(65537, 2048) if self.algorithm == "RS256"
                                   else ed25519.Ed25519PrivateKey.generate())
        return self._private[name]

    def public_pem(self, name: str) -> bytes:
        return bytes(self.private(name).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def sign(self, name: str, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        key = self.secret(name) if self.algorithm.startswith("HS") else self.private(name)
        return jwt.encode(claims, key, algorithm=self.algorithm, headers=headers)

    def _private_pem(self, name: str) -> bytes:
        return bytes(self.private(name).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def _file(self, name: str, content: bytes) -> str:
        path = self.directory / name
        path.write_bytes(content)
        return str(path)


@pytest.fixture(params=ALL)
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Keys:
    return Keys(request.param, tmp_path)


@pytest.fixture(params=ASYMMETRIC)
def public_keys(request: pytest.FixtureRequest, tmp_path: Path) -> Keys:
    return Keys(request.param, tmp_path)


def kid_of(token: str) -> str:
    kid = jwt.get_unverified_header(token)["kid"]
    assert isinstance(kid, str)
    return kid


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def me(client: Client, access_token: str) -> int:
    return (await client.get("/api/v1/auth/me", headers=bearer({"access_token": access_token}))).status


async def assert_refused(client: Client, access_token: str) -> None:
    resp = await client.get("/api/v1/auth/me", headers=bearer({"access_token": access_token}))
    assert (await assert_problem(resp, 401))["detail"] == INVALID


async def test_a_token_signed_with_the_previous_key_works_until_the_key_is_removed(
    stack: StackFactory, keys: Keys, redis_db: str
) -> None:
    before = await stack(keys.env("old"), redis_url=redis_db)
    await register(before, "ann@example.com", PASSWORD)
    old_pair = await login(before, "ann@example.com", PASSWORD)
    spare = await login(before, "ann@example.com", PASSWORD)  # a second session, never refreshed

    rotated = await stack(keys.env("new", previous=("old",)), redis_url=redis_db)
    assert await me(rotated, old_pair["access_token"]) == 200
    resp = await rotated.post("/api/v1/auth/refresh", json={"refresh_token": old_pair["refresh_token"]})
    assert resp.status == 200, await resp.text()
    new_pair = await resp.json()
    assert kid_of(new_pair["access_token"]) == kid_of(new_pair["refresh_token"]) != kid_of(old_pair["access_token"])
    assert await me(rotated, new_pair["access_token"]) == 200

    dropped = await stack(keys.env("new"), redis_url=redis_db)
    await assert_refused(dropped, spare["access_token"])
    resp = await dropped.post("/api/v1/auth/refresh", json={"refresh_token": spare["refresh_token"]})
    await assert_problem(resp, 401)
    assert await me(dropped, new_pair["access_token"]) == 200


async def test_tokens_issued_before_kids_keep_working_until_they_expire(
    stack: StackFactory, keys: Keys, redis_db: str
) -> None:
    service = await stack(keys.env("old"), redis_url=redis_db)
    await register(service, "bob@example.com", PASSWORD)
    claims = claims_of((await login(service, "bob@example.com", PASSWORD))["access_token"])
    legacy = keys.sign("old", claims)  # as the service signed them before tokens carried a kid
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert await me(service, legacy) == 200
    await assert_refused(service, keys.sign("old", {**claims, "exp": int(time.time()) - 1}))
    # Without a kid only the current key is tried: rotate after the old tokens have expired.
    rotated = await stack(keys.env("new", previous=("old",)), redis_url=redis_db)
    await assert_refused(rotated, legacy)


async def test_an_unknown_kid_is_refused(stack: StackFactory, keys: Keys) -> None:
    service = await stack(keys.env("current"))
    await register(service, "cat@example.com", PASSWORD)
    claims = claims_of((await login(service, "cat@example.com", PASSWORD))["access_token"])
    await assert_refused(service, keys.sign("current", claims, headers={"kid": "someone-elses-key"}))


async def test_the_jwk_set_lists_current_and_previous_public_keys(stack: StackFactory, public_keys: Keys) -> None:
    keys = public_keys
    before = await stack(keys.env("old"))
    await register(before, "dan@example.com", PASSWORD)
    old_token = (await login(before, "dan@example.com", PASSWORD))["access_token"]
    service = await stack(keys.env("new", previous=("old",)))
    new_token = (await login(service, "dan@example.com", PASSWORD))["access_token"]

    resp = await service.get("/.well-known/jwks.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    document = await resp.json()
    assert [key["kid"] for key in document["keys"]] == [kid_of(new_token), kid_of(old_token)]
    material = {"n", "e"} if keys.algorithm == "RS256" else {"crv", "x"}
    for key in document["keys"]:
        assert set(key) == {"kid", "kty", "alg", "use", *material}  # public members only: no "d", "p", …
        assert (key["kty"], key["alg"], key["use"]) == (
            "RSA" if keys.algorithm == "RS256" else "OKP", keys.algorithm, "sig")
    assert {key.get("crv", "Ed25519") for key in document["keys"]} == {"Ed25519"}


async def test_the_jwk_set_verifies_tokens_with_an_independent_client(
    stack: StackFactory, public_keys: Keys
) -> None:
    """A verifier that knows nothing but the URL (PyJWT's PyJWKClient, as an API gateway does)."""
    keys = public_keys
    before = await stack(keys.env("old"))
    await register(before, "eve@example.com", PASSWORD)
    old_token = (await login(before, "eve@example.com", PASSWORD))["access_token"]
    service = await stack(keys.env("new", previous=("old",)))
    new_token = (await login(service, "eve@example.com", PASSWORD))["access_token"]
    client = jwt.PyJWKClient(str(service.make_url("/.well-known/jwks.json")), cache_keys=False)
    for token in (new_token, old_token):
        # PyJWKClient blocks (urllib), and the service answers on this event loop.
        signing_key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
        verified = jwt.decode(token, signing_key, algorithms=[keys.algorithm], audience="turnstile-api",
                              issuer="turnstile")
        assert verified["sub"] == claims_of(token)["sub"]


async def test_hmac_secrets_are_never_published(stack: StackFactory, tmp_path: Path) -> None:
    keys = Keys("HS256", tmp_path)
    service = await stack(keys.env("new", previous=("old",)))
    resp = await service.get("/.well-known/jwks.json")
    body = await assert_problem(resp, 404)
    assert "HMAC" in body["detail"]
    text = json.dumps(body)
    assert keys.secret("new") not in text
    assert keys.secret("old") not in text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """HS256 by hand: PyJWT itself refuses a PEM key as an HMAC secret; an attacker does not."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


async def test_a_public_key_used_as_an_hmac_secret_is_refused(stack: StackFactory, public_keys: Keys) -> None:
    """Algorithm confusion: the attacker has the public key (it is published) and signs HS256
    with it, naming the published kid; the kid picks a public key, and the algorithm stays pinned."""
    keys = public_keys
    service = await stack(keys.env("current"))
    await register(service, "fay@example.com", PASSWORD)
    claims = claims_of((await login(service, "fay@example.com", PASSWORD))["access_token"]) | {"roles": ["admin"]}
    kid = (await (await service.get("/.well-known/jwks.json")).json())["keys"][0]["kid"]
    pem = keys.public_pem("current")
    for header in ({"alg": "HS256", "typ": "JWT", "kid": kid}, {"alg": "HS256", "typ": "JWT"}):
        await assert_refused(service, _hs256(header, claims, pem))
        await assert_refused(service, _hs256(header, claims, pem.strip()))


async def test_the_openapi_document_lists_the_jwk_set(stack: StackFactory) -> None:
    service = await stack()
    document = await (await service.get("/api/docs/swagger.json")).json()
    validate(document)
    operation = document["paths"]["/.well-known/jwks.json"]["get"]
    assert operation["tags"] == ["operations"]
    assert {"200", "404"} <= set(operation["responses"])
