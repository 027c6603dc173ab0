"""The auth plugin's own settings: the JWT_* variables, token lifetimes and argon2 costs."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import plugins.auth
from app.plugin_settings import PluginSettings, read_plugin_settings
from app.plugins import make_plugin_manager
from plugins.auth.settings import PasswordSettings, TokenSettings

SECRET = "s" * 40


def read(environ: dict[str, str], *, production: bool = False) -> tuple[PluginSettings, list[str]]:
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.auth])
    return read_plugin_settings(pm, environ, production=production)


def test_defaults_are_the_documented_ones() -> None:
    values, problems = read({})
    assert problems == []
    tokens = values.get(TokenSettings)
    assert (tokens.algorithm, tokens.access_token_ttl_s, tokens.refresh_token_ttl_s) == ("HS256", 900, 14 * 24 * 3600)
    assert tokens.secret == ""
    assert tokens.embedded_defaults() == ["a random development JWT secret"]
    assert values.get(PasswordSettings) == PasswordSettings(time_cost=3, memory_kib=65536, parallelism=4)


def test_the_secret_comes_from_its_file_and_stays_out_of_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text(SECRET + "\n")
    values, problems = read({"JWT_SECRET_FILE": str(secret_file)}, production=True)
    assert problems == []
    assert values.get(TokenSettings).secret == SECRET
    assert SECRET not in repr(values.get(TokenSettings))


def test_algorithms_are_named_in_any_case_and_asymmetric_ones_need_key_files(tmp_path: Path) -> None:
    values, problems = read({"JWT_ALGORITHM": "eddsa"})
    assert values.get(TokenSettings).algorithm == "EdDSA"
    assert problems == [
        "JWT_PRIVATE_KEY_FILE: EdDSA needs a readable key file",
        "JWT_PUBLIC_KEY_FILE: EdDSA needs a readable key file",
    ]
    private = rsa.generate_private_key(65537, 2048)
    private_file, public_file = tmp_path / "private.pem", tmp_path / "public.pem"
    private_file.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public_file.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _values, problems = read({"JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY_FILE": str(private_file),
                              "JWT_PUBLIC_KEY_FILE": str(public_file)}, production=True)
    assert problems == []  # no JWT_SECRET needed in production with key files


def test_the_variable_names_operators_set_are_unchanged() -> None:
    _values, problems = read({"ACCESS_TOKEN_TTL_S": "0", "REFRESH_TOKEN_TTL_S": "x", "ARGON2_MEMORY_KIB": "lots",
                              "JWT_ISSUER": "a", "JWT_AUDIENCE": "b", "JWT_SECRET": SECRET})
    assert problems == [
        "ACCESS_TOKEN_TTL_S='0': expected a positive whole number",
        "REFRESH_TOKEN_TTL_S='x': expected a positive whole number",
        "ARGON2_MEMORY_KIB='lots': expected a positive whole number",
    ]
