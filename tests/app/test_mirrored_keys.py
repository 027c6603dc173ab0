"""The local mirror tracks the Redis keys the plugins name (`register_mirrored_keys`), not a
list the core keeps: the cache's from its steps' keys, the auth plugin's token state."""

from __future__ import annotations

from pathlib import Path

import attrs

from app.keys import redis_key
from app.main import create_app, make_settings_plugin_manager
from app.settings import load_settings
from tests.services import ROOT

CACHED_ONLY = """
[[pipelines]]
name = "thing"
route = "GET /things/{id}"
steps = [
  { use = "cache", key = "thing:{id}" },
  { use = "cache", key = "{id}:by-id" },
  { use = "cache", key = "thing:v2:{id}" },
  { use = "data-fetch", call = "GET /api/v1/things/{id}" },
]
"""


def mirrored(tmp_path: Path, pipelines: Path = ROOT / "pipelines.toml", **environ: str) -> tuple[str, ...]:
    settings = attrs.evolve(
        load_settings({"REDIS_URL": "redis://127.0.0.1:1/0", **environ}),  # never connected: built only
        pipelines_file=pipelines, var_dir=tmp_path,
    )
    app = create_app(settings, pm=make_settings_plugin_manager(settings))
    redis = app[redis_key]
    assert redis is not None
    return () if redis.mirror is None else redis.mirror.prefixes


def test_the_default_pipelines_mirror_the_cached_users_and_the_token_state(tmp_path: Path) -> None:
    assert mirrored(tmp_path) == ("turnstile:auth:fam:", "turnstile:auth:revoked:", "user:")


def test_only_what_the_enabled_plugins_and_their_steps_read_is_mirrored(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(CACHED_ONLY)
    # No auth plugin, no token state; a key starting with a placeholder names no prefix, and
    # `thing:` already covers `thing:v2:` (Redis refuses overlapping prefixes).
    assert mirrored(tmp_path, pipelines, TURNSTILE_DISABLE_PLUGINS="auth") == ("thing:",)


def test_client_tracking_off_mirrors_nothing(tmp_path: Path) -> None:
    assert mirrored(tmp_path, REDIS_CLIENT_TRACKING="0") == ()
