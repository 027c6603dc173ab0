"""JWT_PREVIOUS_SECRETS_FILE, JWT_PREVIOUS_PUBLIC_KEYS_FILE and the key files: checked at
start-up, one line per bad variable, never a key's content in a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from app.main import load_configuration
from app.settings import SettingsError
from plugins.auth.settings import TokenSettings
from tests.plugins.auth.test_settings import SECRET, read

OLD_SECRET = "old-secret-of-the-settings-tests-0123456789"


def _write(path: Path, *keys: Any) -> Path:
    blocks = []
    for key in keys:
        if isinstance(key, bytes):
            blocks.append(key)
        elif hasattr(key, "private_bytes"):
            blocks.append(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        else:
            blocks.append(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    path.write_bytes(b"".join(blocks))
    return path


@pytest.fixture
def ed_pair(tmp_path: Path) -> dict[str, str]:
    private = ed25519.Ed25519PrivateKey.generate()
    return {"JWT_ALGORITHM": "EdDSA",
            "JWT_PRIVATE_KEY_FILE": str(_write(tmp_path / "private.pem", private)),
            "JWT_PUBLIC_KEY_FILE": str(_write(tmp_path / "public.pem", private.public_key()))}


def test_previous_secrets_are_read(tmp_path: Path) -> None:
    previous = tmp_path / "previous"
    previous.write_text(f"# the key before 2026-03\n{OLD_SECRET}\n\n")
    values, problems = read({"JWT_SECRET": SECRET, "JWT_PREVIOUS_SECRETS_FILE": str(previous)})
    assert problems == []
    assert values.get(TokenSettings).previous_secrets_file == previous


def test_bad_previous_secrets_are_one_line_without_the_secrets(tmp_path: Path) -> None:
    previous = tmp_path / "previous"
    previous.write_text(f"{OLD_SECRET}\nshort-one\n")
    _values, problems = read({"JWT_SECRET": SECRET, "JWT_PREVIOUS_SECRETS_FILE": str(previous)})
    assert problems == [f"JWT_PREVIOUS_SECRETS_FILE={str(previous)!r}: line 2 is shorter than 32 bytes, "
                        "the least an HMAC secret may be (RFC 7518 §3.2)"]
    _values, problems = read({"JWT_SECRET": SECRET, "JWT_PREVIOUS_SECRETS_FILE": str(tmp_path / "absent")})
    assert problems == [f"JWT_PREVIOUS_SECRETS_FILE={str(tmp_path / 'absent')!r}: cannot be read "
                        "(No such file or directory)"]


def test_previous_keys_must_suit_the_algorithm(tmp_path: Path, ed_pair: dict[str, str]) -> None:
    secrets = tmp_path / "previous"
    secrets.write_text(OLD_SECRET)
    keys = _write(tmp_path / "previous.pem", ed25519.Ed25519PrivateKey.generate().public_key())
    _values, problems = read({"JWT_SECRET": SECRET, "JWT_PREVIOUS_PUBLIC_KEYS_FILE": str(keys)})
    assert problems == ["JWT_PREVIOUS_PUBLIC_KEYS_FILE: HS256 verifies with secrets; "
                        "list previous ones in JWT_PREVIOUS_SECRETS_FILE"]
    _values, problems = read({**ed_pair, "JWT_PREVIOUS_SECRETS_FILE": str(secrets)})
    assert problems == ["JWT_PREVIOUS_SECRETS_FILE: EdDSA verifies with public keys; "
                        "list previous ones in JWT_PREVIOUS_PUBLIC_KEYS_FILE"]


def test_each_bad_previous_public_key_is_named_in_one_line(tmp_path: Path, ed_pair: dict[str, str]) -> None:
    good = ed25519.Ed25519PrivateKey.generate().public_key()
    rsa_key = rsa.generate_private_key(65537, 2048)
    garbage = b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
    keys = _write(tmp_path / "previous.pem", good, rsa_key.public_key(), garbage, rsa_key)
    values, problems = read({**ed_pair, "JWT_PREVIOUS_PUBLIC_KEYS_FILE": str(keys)})
    assert problems == [
        f"JWT_PREVIOUS_PUBLIC_KEYS_FILE={str(keys)!r}: "
        "key 2 is an RSA key; JWT_ALGORITHM=EdDSA needs an Ed25519 or Ed448 key; "
        "key 3 is not a PEM public key; key 4 is a private key: give the public key only"
    ]
    _write(keys, good, good)
    values, problems = read({**ed_pair, "JWT_PREVIOUS_PUBLIC_KEYS_FILE": str(keys)})
    assert problems == []
    assert values.get(TokenSettings).previous_public_keys_file == keys


def test_key_files_are_parsed_and_must_be_one_pair(tmp_path: Path, ed_pair: dict[str, str]) -> None:
    private_file, public_file = ed_pair["JWT_PRIVATE_KEY_FILE"], ed_pair["JWT_PUBLIC_KEY_FILE"]
    other = _write(tmp_path / "other.pem", ed25519.Ed25519PrivateKey.generate().public_key())
    _values, problems = read({**ed_pair, "JWT_PUBLIC_KEY_FILE": str(other)})
    assert problems == [f"JWT_PUBLIC_KEY_FILE={str(other)!r}: is not the public half of JWT_PRIVATE_KEY_FILE"]
    _values, problems = read({**ed_pair, "JWT_ALGORITHM": "RS256"})
    assert problems == [
        f"JWT_PRIVATE_KEY_FILE={private_file!r}: is an Ed25519/Ed448 key; JWT_ALGORITHM=RS256 needs an RSA key",
        f"JWT_PUBLIC_KEY_FILE={public_file!r}: is an Ed25519/Ed448 key; JWT_ALGORITHM=RS256 needs an RSA key",
    ]
    _values, problems = read({**ed_pair, "JWT_PRIVATE_KEY_FILE": public_file})
    assert problems == [f"JWT_PRIVATE_KEY_FILE={public_file!r}: is not a PEM private key"]


def test_the_start_up_report_names_every_bad_variable_and_no_secret(tmp_path: Path) -> None:
    secrets = tmp_path / "previous"
    secrets.write_text(f"{OLD_SECRET}\nshort-secret-value\n")
    keys = _write(tmp_path / "previous.pem", rsa.generate_private_key(65537, 2048).public_key())
    with pytest.raises(SettingsError) as caught:
        load_configuration({"JWT_SECRET": SECRET, "JWT_PREVIOUS_SECRETS_FILE": str(secrets),
                            "JWT_PREVIOUS_PUBLIC_KEYS_FILE": str(keys), "TURNSTILE_VAR_DIR": str(tmp_path)})
    assert caught.value.problems == [
        "JWT_PREVIOUS_PUBLIC_KEYS_FILE: HS256 verifies with secrets; list previous ones in JWT_PREVIOUS_SECRETS_FILE",
        f"JWT_PREVIOUS_SECRETS_FILE={str(secrets)!r}: line 2 is shorter than 32 bytes, "
        "the least an HMAC secret may be (RFC 7518 §3.2)",
    ]
    assert "short-secret-value" not in str(caught.value)
    assert OLD_SECRET not in str(caught.value)
