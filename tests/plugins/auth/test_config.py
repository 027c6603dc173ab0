from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import plugins.auth
from app.converter import converter, structure_errors
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked
from app.plugins import make_plugin_manager
from plugins.auth.config import AuthConfig, LoginConfig, LogoutConfig, RefreshConfig, RevokeTokensConfig


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, AuthConfig(allow=("authenticated",), self_param="id")),
        ({"allow": ["self", "admin"]}, AuthConfig(allow=("self", "admin"))),
        ({"allow": ["anyone"]}, AuthConfig(allow=("anyone",))),
        ({"allow": ["self"], "self_param": "user_id"}, AuthConfig(allow=("self",), self_param="user_id")),
    ],
)
def test_good_auth_configs(settings: dict[str, Any], expected: AuthConfig) -> None:
    assert converter.structure(settings, AuthConfig) == expected


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"allow": ["root"]}, ["allow: unknown 'root': expected any of anyone, authenticated, admin, self"]),
        ({"allow": []}, ["allow: must name at least one of anyone, authenticated, admin, self"]),
        ({"allow": "admin"}, ["allow: expected a list, got 'admin'"]),
        ({"allow": [1]}, ["allow[0]: expected a string, got 1"]),
        ({"self_param": 5}, ["self_param: expected a string, got 5"]),
        ({"roles": ["admin"]}, ["roles: unknown setting 'roles'"]),
    ],
)
def test_bad_auth_configs(settings: dict[str, Any], expected: list[str]) -> None:
    assert structure_errors(settings, AuthConfig) == expected


def test_terminal_step_configs() -> None:
    assert converter.structure({}, LoginConfig) == LoginConfig(rehash=True)
    assert converter.structure({"rehash": False}, LoginConfig) == LoginConfig(rehash=False)
    assert converter.structure({}, RefreshConfig) == RefreshConfig()
    assert converter.structure({}, LogoutConfig) == LogoutConfig()
    assert structure_errors({"rehash": "yes"}, LoginConfig) == ["rehash: expected true or false, got 'yes'"]
    assert structure_errors({"ttl": 5}, RefreshConfig) == ["ttl: unknown setting 'ttl'"]
    assert structure_errors({"x": 1}, LogoutConfig) == ["x: unknown setting 'x'"]


def test_revoke_tokens_config() -> None:
    assert converter.structure({"user": "{id}"}, RevokeTokensConfig) == RevokeTokensConfig(user="{id}")
    assert structure_errors({}, RevokeTokensConfig) == ["user: required setting missing"]
    assert structure_errors({"user": 3}, RevokeTokensConfig) == ["user: expected a string, got 3"]


def test_errors_in_pipelines_toml_are_located(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(
        '[[pipelines]]\nname = "me"\nroute = "GET /me/{id}"\n'
        'steps = [\n  { use = "auth", allow = ["root"] },\n  { use = "revoke-tokens", user = "{uid}" },\n'
        '  { use = "logout" },\n]\n'
    )
    with pytest.raises(PipelineFileError) as caught:
        load_checked(pipelines, make_plugin_manager(entrypoints=False, extra=[plugins.auth]))
    text = str(caught.value)
    assert f"{pipelines}:5: " in text
    assert "allow: unknown 'root'" in text
    assert f"{pipelines}:6: " in text
    assert "placeholder {uid} names no route parameter" in text


def test_verified_and_session_settings_are_checked_where_they_stand(tmp_path: Path) -> None:
    assert converter.structure({"verified": True}, AuthConfig) == AuthConfig(verified=True)
    assert structure_errors({"verified": "yes"}, AuthConfig) == ["verified: expected true or false, got 'yes'"]
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(
        '[[pipelines]]\nname = "open"\nroute = "GET /open"\n'
        'steps = [{ use = "auth", allow = ["anyone"], verified = true }, { use = "sessions" }]\n\n'
        '[[pipelines]]\nname = "end"\nroute = "DELETE /sessions/{sid}"\n'
        'steps = [{ use = "auth" }, { use = "end-session" }]\n'
    )
    with pytest.raises(PipelineFileError) as caught:
        load_checked(pipelines, make_plugin_manager(entrypoints=False, extra=[plugins.auth]))
    assert [str(error) for error in caught.value.errors] == [
        f"{pipelines}:4: pipeline 'open', step 1 (auth): verified = true needs a caller: it cannot go with "
        "allow 'anyone'",
        f"{pipelines}:9: pipeline 'end', step 2 (end-session): the route has no {{id}} parameter "
        "(set session_param)",
    ]
