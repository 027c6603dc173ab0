from __future__ import annotations

from plugins.auth.passwords import Argon2Hasher as PasswordHasher


async def test_hash_then_verify(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse")
    assert hashed.startswith("$argon2id$")
    assert await hasher.verify(hashed, "correct horse")
    assert not await hasher.verify(hashed, "wrong horse")


async def test_malformed_hash_does_not_verify(hasher: PasswordHasher) -> None:
    assert not await hasher.verify("not a hash", "whatever")
    assert hasher.needs_rehash("not a hash")


async def test_needs_rehash_when_costs_change(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("pw")
    assert not hasher.needs_rehash(hashed)
    stronger = PasswordHasher(time_cost=2, memory_kib=8, parallelism=1)
    assert stronger.needs_rehash(hashed)
    assert await stronger.verify(hashed, "pw")
