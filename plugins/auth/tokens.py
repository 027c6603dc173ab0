"""Issuing and verifying the service's JWTs (PyJWT), with the algorithm pinned from settings.

Claims: ``sub`` (user id as text), ``roles``, ``exp``, ``iat``, ``jti``, ``iss``, ``aud``,
``type`` (``access`` or ``refresh``) and ``fam``: the session (refresh-token family) the token
belongs to, so ending a session ends its access tokens too.
The header carries the ``kid`` of the key that signed it; previous keys (a rotation) still
verify, and the key is chosen by kid, never by the token's ``alg`` (plugins/auth/keyring.py).
``iat`` has the clock's full precision (RFC 7519 NumericDate may be fractional) so that
"tokens issued before T are dead" tells a token made just after a revocation from one made
just before it, even within one millisecond.

Verifying costs ~35-90 µs per request (PyJWT's base64url checks), the largest single cost of
a cached read. Verified access tokens are remembered in a small LRU until they expire, so
each is verified once per process; revocation is checked by the caller on every request.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import jwt

from plugins.auth.keyring import Keyring, keyring_of, parse_secrets, pem_blocks, read_file
from plugins.auth.settings import TokenSettings

ACCESS: Final = "access"
REFRESH: Final = "refresh"
_REQUIRED: Final = ["sub", "roles", "exp", "iat", "jti", "iss", "aud", "type", "fam"]
DEFAULT_CACHE_SIZE: Final = 4096


class TokenError(Exception):
    """A token that is malformed, badly signed, expired, of the wrong type or for someone else."""


@attrs.frozen
class Claims:
    """The verified claims of one token."""

    user_id: int
    roles: tuple[str, ...]
    jti: str
    type: str
    iat: float
    exp: float
    family: str


@attrs.frozen
class Issued:
    """A freshly signed token and its claims."""

    token: str
    claims: Claims


class Tokens:
    """Signs and verifies tokens with one pinned algorithm; never trusts a token's ``alg``.

    Args:
        algorithm: e.g. "HS256", "RS256", "EdDSA". signing_key / verify_key: the HMAC secret
            (both the same) or the PEM private / public key.
        previous_keys: HMAC secrets or PEM public keys that still verify (never sign): the
            keys a rotation replaced, kept until the tokens they signed have expired.
        issuer, audience: written into and required from every token.
        access_ttl_s, refresh_ttl_s: lifetimes. cache_size: verified access tokens kept.
        clock: seconds since the epoch (tests move it).
    """

    def __init__(
        self,
        *,
        algorithm: str,
        signing_key: str | bytes,
        verify_key: str | bytes,
        previous_keys: Sequence[str | bytes] = (),
        issuer: str,
        audience: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithm = algorithm
        self.keyring: Keyring = keyring_of(algorithm, signing_key, verify_key, previous_keys)
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._clock = clock

    def now(self) -> float:
        """The current time as tokens record it (``iat``, at the clock's full precision).

        Not rounded: revocation cut-offs are recorded at full precision too, so a login that
        began after a revocation (even within the same millisecond) is told from one that
        began before it. A JSON float carries the value exactly (RFC 7519 NumericDate may be
        fractional).
        """
        return self._clock()

    def issue_access(
        self, user_id: int, roles: tuple[str, ...], family: str, *, issued_at: float | None = None
    ) -> Issued:
        """An access token of session `family`.

        issued_at: the ``iat`` to record; pass the time the user record the token's claims
          come from was read, so a revocation made after that read (a password change, a
          deactivation) kills the token even when it is signed later.
        """
        return self._issue(user_id, roles, ACCESS, self.access_ttl_s, family, issued_at=issued_at)

    def issue_refresh(
        self, user_id: int, roles: tuple[str, ...], family: str | None = None, *, issued_at: float | None = None
    ) -> Issued:
        """A refresh token in `family` (a new family when None); `issued_at` as for access tokens."""
        return self._issue(user_id, roles, REFRESH, self.refresh_ttl_s, family or uuid.uuid4().hex, issued_at=issued_at)

    def verify(self, token: str, expected_type: str) -> Claims:
        """The claims of a valid token of `expected_type`.

        Raises:
            TokenError: bad signature, another algorithm, expired, wrong issuer or audience,
                a claim missing or of the wrong shape, or another token type.
        """
        if expected_type == ACCESS:
            cached = self._cache.get(token)
            if cached is not None:
                if cached.exp > self._clock():
                    self._cache.move_to_end(token)
                    return cached
                del self._cache[token]
        claims = self._decode(token, expected_type)
        if expected_type == ACCESS:
            self._cache[token] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _issue(
        self, user_id: int, roles: tuple[str, ...], kind: str, ttl_s: int, family: str, *, issued_at: float | None
    ) -> Issued:
        now = self.now() if issued_at is None else issued_at
        payload: dict[str, Any] = {
            "sub": str(user_id), "roles": list(roles), "iat": now, "exp": int(now) + ttl_s,
            "jti": uuid.uuid4().hex, "iss": self.issuer, "aud": self.audience, "type": kind, "fam": family,
        }
        token = jwt.encode(
            payload, self.keyring.signing_key, algorithm=self.algorithm, headers={"kid": self.keyring.signing_kid}
        )
        claims = Claims(user_id, tuple(roles), payload["jti"], kind, now, payload["exp"], family)
        return Issued(token, claims)

    def _decode(self, token: str, expected_type: str) -> Claims:
        if not token.isascii():
            # A JWT is base64url and dots. aiohttp hands a header's bytes that are not UTF-8 over
            # as surrogates, on which PyJWT's encoding raised: a 500 for anyone who sent them.
            msg = "not a JWT: characters outside ASCII"
            raise TokenError(msg)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None
        if kid is not None and not isinstance(kid, str):
            msg = "malformed kid header"
            raise TokenError(msg)
        key = self.keyring.verification_key(kid)
        if key is None:
            msg = "signed by an unknown key (kid)"
            raise TokenError(msg)
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                # exp is checked below against the injectable clock.
                options={"require": _REQUIRED, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None
        exp = payload["exp"]
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            msg = "malformed exp claim"
            raise TokenError(msg)
        if exp <= self._clock():
            msg = "the token has expired"
            raise TokenError(msg)
        return _claims(payload, expected_type)


def _claims(payload: dict[str, Any], expected_type: str) -> Claims:
    if payload["type"] != expected_type:
        msg = f"expected a {expected_type} token"
        raise TokenError(msg)
    sub, roles, jti, fam = payload["sub"], payload["roles"], payload["jti"], payload.get("fam")
    # isdigit() alone takes "¹" and other scripts' digits, which int() then refuses (a 500).
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and isinstance(jti, str)):
        msg = "malformed sub or jti claim"
        raise TokenError(msg)
    if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        msg = "malformed roles claim"
        raise TokenError(msg)
    if not (isinstance(fam, str) and fam):
        msg = "malformed fam claim"
        raise TokenError(msg)
    return Claims(int(sub), tuple(roles), jti, expected_type, float(payload["iat"]), float(payload["exp"]), fam)


def tokens_for(settings: TokenSettings) -> Tokens:
    """The token service `settings` describe: an HMAC secret, or PEM key files for RS256/EdDSA,
    and the previous keys of a rotation (JWT_PREVIOUS_SECRETS_FILE, JWT_PREVIOUS_PUBLIC_KEYS_FILE).

    Without JWT_SECRET (development only: production refuses it) the secret is a random one,
    so tokens live as long as this process.

    Raises:
        KeyProblem: a key file that `TokenSettings.check` would have refused.
    """
    signing: str | bytes
    verifying: str | bytes
    previous: Sequence[bytes] = ()
    if settings.hmac:
        signing = verifying = settings.secret or secrets.token_urlsafe(48)
        if settings.previous_secrets_file is not None:
            previous = parse_secrets(read_file(settings.previous_secrets_file))
    else:
        if settings.private_key_file is None or settings.public_key_file is None:
            msg = f"{settings.algorithm} needs JWT_PRIVATE_KEY_FILE and JWT_PUBLIC_KEY_FILE"
            raise ValueError(msg)
        signing = read_file(settings.private_key_file)
        verifying = read_file(settings.public_key_file)
        if settings.previous_public_keys_file is not None:
            previous = pem_blocks(read_file(settings.previous_public_keys_file))
    return Tokens(
        algorithm=settings.algorithm,
        signing_key=signing,
        verify_key=verifying,
        previous_keys=previous,
        issuer=settings.issuer,
        audience=settings.audience,
        access_ttl_s=settings.access_token_ttl_s,
        refresh_ttl_s=settings.refresh_token_ttl_s,
    )
