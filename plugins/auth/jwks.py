"""`GET /.well-known/jwks.json`: the public keys that verify this service's tokens (RFC 7517).

With RS256 or EdDSA, other services verify Turnstile's tokens without sharing a secret: they
fetch this JWK Set and pick the key by the token's ``kid``. It lists the current key and the
previous ones of a rotation, so a token is verifiable for as long as Turnstile accepts it.
With HMAC there is nothing to publish (the secret verifies *and* signs): 404.

The keys are public, so the answer may be cached by anyone for a short while, as identity
providers do: a verifier that meets an unknown kid refetches, and a rotation publishes the
new key (as a previous one) before it signs anything (docs/deploy.md).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from app import NotFound, PluginRoute, json_response, model_ref
from plugins.auth.services import services_key

JWKS_PATH: Final = "/.well-known/jwks.json"
CACHE_CONTROL: Final = "public, max-age=300"


async def jwk_set(request: web.Request) -> web.Response:
    document = request.app[services_key].tokens.keyring.jwk_set()
    if document is None:
        msg = "Tokens are signed with an HMAC secret, which is never published: there is no public key."
        raise NotFound(msg)
    return json_response(document, headers={"Cache-Control": CACHE_CONTROL})


_JWK_SCHEMA: Final = {
    "type": "object",
    "required": ["kid", "kty", "alg", "use"],
    "properties": {
        "kid": {"type": "string", "description": "Key id: the RFC 7638 thumbprint, as in the tokens' header"},
        "kty": {"type": "string", "enum": ["RSA", "OKP"]},
        "alg": {"type": "string", "enum": ["RS256", "EdDSA"]},
        "use": {"type": "string", "enum": ["sig"]},
        "n": {"type": "string", "description": "RSA modulus (base64url)"},
        "e": {"type": "string", "description": "RSA exponent (base64url)"},
        "crv": {"type": "string", "enum": ["Ed25519", "Ed448"]},
        "x": {"type": "string", "description": "OKP public key (base64url)"},
    },
}

JWKS_ROUTE: Final = PluginRoute(
    path=JWKS_PATH,
    handler=jwk_set,
    name="jwks",
    summary="The public keys that verify tokens (RS256, EdDSA): current and previous, by kid",
    responses={
        "200": {
            "description": f"RFC 7517 JWK Set; Cache-Control: {CACHE_CONTROL}",
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": _JWK_SCHEMA}},
            }}},
        },
        "404": {
            "description": "Tokens are HMAC-signed: no public key to publish",
            "content": {"application/problem+json": {"schema": model_ref("Problem")}},
        },
    },
)
