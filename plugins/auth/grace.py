"""The answer a refresh keeps for its grace window, sealed with the refresh token it answers.

Two refreshes of one token within the grace window (a client retry, two tabs) get the same new
pair (contract §9a), so the first keeps its answer in Redis for those few seconds. Kept as it is,
that answer is a live session (a 14-day refresh token) in plain text for anyone who can read
Redis then: `MONITOR`, a replica, a snapshot or AOF file, a backup. Sealed with a key derived from
the presented refresh token, it opens only for a caller who holds that token, which is exactly
who may have the answer again; Redis holds nothing that token does not already give.

AES-GCM (cryptography, already a dependency for the RS and EdDSA keys): a random 96-bit nonce per
answer, the key SHA-256 of a domain label and the token (the token is a signed JWT: far more
entropy than a password, so no slow KDF is needed).
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_LABEL: Final = b"turnstile refresh grace answer\x00"
_NONCE_BYTES: Final = 12


class Unsealable(Exception):
    """The kept answer does not open with this token (not the token it answered, or corrupt)."""


def _key(presented_token: str) -> bytes:
    return hashlib.sha256(_LABEL + presented_token.encode()).digest()


def seal(answer: str, presented_token: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(presented_token)).encrypt(nonce, answer.encode(), None)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(kept: str, presented_token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(kept.encode())
        return AESGCM(_key(presented_token)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None).decode()
    except (InvalidTag, ValueError) as exc:
        raise Unsealable(str(exc)) from None
