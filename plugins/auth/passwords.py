"""Password hashing with argon2id, off the event loop; the auth plugin provides it to every
plugin under `password_hasher_key` (the users plugin hashes with it before a write).

argon2 at production cost takes ~90 ms of CPU per hash. argon2-cffi releases the GIL while
it hashes, so running it on worker threads keeps the loop serving other requests; how many run
at once, and how many may wait, is bounded (`HashingGate`: 503 past it).
"""

from __future__ import annotations

import unicodedata
from typing import Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from plugins.auth.hashing_gate import HashingGate, usable_cores
from plugins.auth.settings import PasswordSettings

_HASH_LEN: Final = 32
_SALT_LEN: Final = 16


def prepare_password(password: str) -> str:
    """The password as hashed (RFC 8265's OpaqueString, its mappings): every space of another
    script as U+0020, then NFC. The same password typed on another system (macOS writes "é" as
    e + U+0301, NFD) or with a no-break space is the same password; otherwise it failed to log
    in. Nothing is refused: a password is the user's to choose."""
    spaced = "".join(" " if unicodedata.category(char) == "Zs" else char for char in password)
    return unicodedata.normalize("NFC", spaced)


class Argon2Hasher:
    """argon2id with the costs from PasswordSettings; `hash` and `verify` run through `gate`.

    Args:
        time_cost: iterations. memory_kib: memory per hash in KiB. parallelism: lanes.
        gate: the bounded hashing threads (503 when full); by default as many as the process
            may use cores, with twice as many waiting.
    """

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, gate: HashingGate | None = None
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=_HASH_LEN,
            salt_len=_SALT_LEN,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None
        if gate is None:
            workers = usable_cores()
            gate = HashingGate(workers=workers, queue=2 * workers)
        self.gate = gate

    async def hash(self, password: str) -> str:
        """The argon2id hash of `password` as prepared (`prepare_password`; PHC string format)."""
        return await self.gate.run(self._hasher.hash, prepare_password(password))

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether `password` matches `password_hash`; False also for a malformed hash."""
        return await self.gate.run(self._verify_as_typed_or_prepared, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend one verification on a hash nobody has, so an unknown account costs what a known one does."""
        if self._dummy is None:
            self._dummy = await self.hash("dummy password, never anyone's")
        await self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True

    def _verify_as_typed_or_prepared(self, password_hash: str, password: str) -> bool:
        """As prepared; failing that, as typed, when that differs: the hashes made before passwords
        were prepared are of the password as typed. One slot of the gate for both (a dummy
        verification does the same, so an unknown account still costs what a known one does)."""
        prepared = prepare_password(password)
        return self._verify(password_hash, prepared) or (prepared != password and self._verify(password_hash, password))

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def hasher_for(settings: PasswordSettings) -> Argon2Hasher:
    """The hasher with the argon2 costs and the hashing bound `settings` name."""
    workers = settings.max_concurrent or usable_cores()
    gate = HashingGate(workers=workers, queue=settings.queue if settings.queue is not None else 2 * workers)
    return Argon2Hasher(time_cost=settings.time_cost, memory_kib=settings.memory_kib,
                        parallelism=settings.parallelism, gate=gate)
