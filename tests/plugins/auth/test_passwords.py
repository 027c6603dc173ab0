from __future__ import annotations

import argon2

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


async def test_one_password_typed_on_another_system_is_the_same_password(hasher: PasswordHasher) -> None:
    # RFC 8265's OpaqueString: registered with "é" as one character (NFC), typed on a system that
    # writes it as e + U+0301 (NFD), it failed to log in; so did a no-break space for a space.
    hashed = await hasher.hash("caf\u00e9 au lait")
    assert await hasher.verify(hashed, "cafe\u0301 au lait")
    assert await hasher.verify(hashed, "caf\u00e9\u00a0au lait")
    assert not await hasher.verify(hashed, "cafe au lait")


async def test_a_hash_made_of_the_password_as_typed_still_verifies(hasher: PasswordHasher) -> None:
    # Hashes made before passwords were prepared are of the password as it was typed.
    as_typed = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("cafe\u0301\u00a0au lait")
    assert await hasher.verify(as_typed, "cafe\u0301\u00a0au lait")
    assert not await hasher.verify(as_typed, "another password")
