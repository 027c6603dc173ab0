"""app.redact: what a trace line may show of a value (contract §11)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple

import attrs
import pytest

from app.redact import MASK, Redacted, is_secret_key, redact, redact_text

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


@attrs.frozen
class Login:
    email: str
    password: str | None


@dataclasses.dataclass
class Grant:
    client_id: str
    client_secret: str


class Pair(NamedTuple):
    access_token: str
    expires_in: int


@pytest.mark.parametrize("key", [
    "password", "Password", "CURRENT_PASSWORD", "new_password", "password_hash", "token", "access_token",
    "refresh_token", "client_secret", "secret", "Authorization", "x-refresh-token", "admin_password",
])
def test_secret_keys_are_known_by_name(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "s3cret-value"}) == {key: MASK}


@pytest.mark.parametrize("key", ["email", "full_name", "token_type", "token_id", "roles", "id"])
def test_other_keys_are_shown(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "plain"}) == {key: "plain"}


def test_secrets_are_masked_at_any_depth_and_in_records() -> None:
    value: dict[str, Any] = {
        "body": [{"user": {"Password": "hunter2hunter2"}}, Login("a@example.com", "hunter2hunter2")],
        "grant": Grant("web", "very-secret"),
        "pair": Pair("opaque-token-value", 900),
        "ids": (1, 2),
        "nothing": None,
    }
    text = repr(redact(value))
    assert "hunter2" not in text
    assert "very-secret" not in text
    assert "opaque-token-value" not in text
    assert "Login(email='a@example.com', password='***')" in text
    assert "Grant(client_id='web', client_secret='***')" in text
    assert "Pair(access_token='***', expires_in=900)" in text
    assert "'ids': (1, 2)" in text
    assert "'nothing': None" in text


@pytest.mark.parametrize("text", [
    HASH, JWT, f"Bearer {JWT}", "bearer opaque.token~value", f"hash={HASH};", f"the token {JWT} expired",
])
def test_secrets_are_masked_by_their_shape_anywhere(text: str) -> None:
    masked = redact_text(text)
    assert MASK in masked
    for secret in (HASH, JWT, "opaque.token~value"):
        assert secret not in masked
    assert redact({"note": text})["note"] == masked


def test_objects_it_cannot_walk_are_shown_by_their_masked_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque(password='pw with spaces', user=7, auth=\"Bearer abc\", hash={HASH})"

    text = repr(redact(Opaque()))
    assert text == "Opaque(password='***', user=7, auth=\"***\", hash=***)"
    assert repr(redact(b"password=x")) == "<10 bytes>"
    assert repr(redact('{"password": "pw", "email": "a@b.c"}')) == repr('{"password": \'***\', "email": "a@b.c"}')


def test_deep_or_self_referencing_values_are_cut_off() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert "..." in repr(redact(loop))


def test_redaction_runs_only_when_the_line_is_written(caplog: pytest.LogCaptureFixture) -> None:
    class Explodes:
        def __repr__(self) -> str:
            raise AssertionError("formatted although the logger is off")

    quiet = logging.getLogger("tests.redact.quiet")
    quiet.setLevel(logging.WARNING)
    quiet.info("value %r", Redacted(Explodes()))
    loud = logging.getLogger("tests.redact.loud")
    with caplog.at_level(logging.INFO, logger="tests.redact.loud"):
        loud.info("value %r", Redacted({"password": "pw", "email": "a@b.c"}))
    assert caplog.messages == ["value {'password': '***', 'email': 'a@b.c'}"]
