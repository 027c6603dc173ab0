from __future__ import annotations

from typing import Any

import pytest

from app.converter import converter, iter_errors
from app.pipeline.types import StepKind
from plugins.rate_limit.config import RateLimitConfig, kind_of


def errors_of(settings: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(Exception) as info:  # noqa: PT011  # cattrs raises a group or the validator's own error
        converter.structure(settings, RateLimitConfig)
    return list(iter_errors(info.value))


def test_per_client_is_the_default() -> None:
    config = converter.structure({"name": "login-ip", "limit": 20, "window_s": 60}, RateLimitConfig)
    assert config == RateLimitConfig(name="login-ip", limit=20, window_s=60, per="client", count="requests")
    assert config.body_fields == ()
    assert kind_of(config) is StepKind.GUARD


def test_per_body_field_names_the_field_and_stands_after_the_gate() -> None:
    config = converter.structure(
        {"name": "login-email", "per": "client+body.email", "count": "failures", "limit": 5, "window_s": 60},
        RateLimitConfig,
    )
    assert config.parts == ("client", "body.email")
    assert config.body_fields == ("email",)
    assert kind_of(config) is StepKind.WRAPPER


def test_when_names_a_body_field_and_so_stands_after_the_gate() -> None:
    config = converter.structure(
        {"name": "reauth", "per": "actor", "when": "body.current_password", "count": "failures", "limit": 5,
         "window_s": 300},
        RateLimitConfig,
    )
    assert config.parts == ("actor",)
    assert config.body_fields == ("current_password",)
    assert kind_of(config) is StepKind.WRAPPER


def test_trust_forwarded_is_gone_for_trusted_proxies() -> None:
    assert errors_of({"name": "ip", "limit": 5, "window_s": 60, "trust_forwarded": True}) == [
        (("trust_forwarded",), "unknown setting 'trust_forwarded'")
    ]


def test_unknown_setting_is_refused() -> None:
    assert errors_of({"name": "x", "limit": 5, "window_s": 60, "burst": 3}) == [(("burst",), "unknown setting 'burst'")]


def test_missing_settings_are_each_reported() -> None:
    assert sorted(errors_of({"name": "x"})) == [
        (("limit",), "required setting missing"),
        (("window_s",), "required setting missing"),
    ]


def test_a_string_limit_is_refused() -> None:
    assert errors_of({"name": "x", "limit": "5", "window_s": 60}) == [(("limit",), "expected an integer, got '5'")]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "x", "limit": 0, "window_s": 60}, "'limit' must be > 0: 0"),
        ({"name": "x", "limit": 5, "window_s": -1}, "'window_s' must be > 0: -1"),
        (
            {"name": "x", "limit": 5, "window_s": 60, "per": "header.x"},
            'per must be "client", "actor", "body.<field>" or several joined by "+", got \'header.x\'',
        ),
        (
            {"name": "x", "limit": 5, "window_s": 60, "per": "body."},
            'per must be "client", "actor", "body.<field>" or several joined by "+", got \'body.\'',
        ),
        (
            {"name": "x", "limit": 5, "window_s": 60, "count": "all"},
            "count must be \"requests\" or \"failures\", got 'all'",
        ),
        (
            {"name": "x", "limit": 5, "window_s": 60, "when": "actor"},
            "when must be \"body.<field>\", got 'actor'",
        ),
        (
            {"name": "Login Email", "limit": 5, "window_s": 60},
            "name must be lower-case letters, digits, '-' or '_', got 'Login Email'",
        ),
    ],
)
def test_bad_values_are_refused_with_a_message(settings: dict[str, Any], message: str) -> None:
    assert errors_of(settings) == [((), message)]
