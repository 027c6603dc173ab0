from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.converter import converter, structure_errors
from plugins.cache.config import CacheConfig, CacheInvalidateConfig


def test_cache_defaults() -> None:
    config = converter.structure({"key": "user:{id}"}, CacheConfig)

    assert config == CacheConfig(key="user:{id}", ttl_s=3600, not_found_ttl_s=0, fail_open=True)


def test_invalidate_keys_become_a_tuple() -> None:
    config = converter.structure({"keys": ["user:{id}", "users:list"]}, CacheInvalidateConfig)

    assert config.keys == ("user:{id}", "users:list")

    assert converter.structure({"keys": ["user:{id}"]}, CacheInvalidateConfig).keys == ("user:{id}",)


def test_invalidate_tombstone_outlasts_the_longest_default_fill() -> None:
    config = converter.structure({"keys": ["user:{id}"]}, CacheInvalidateConfig)

    # 3 attempts of 5 s, 0.15 s of backoff, a 1.5 s Redis write: the tombstone must outlive them.
    assert config.tombstone_ttl_s == 30


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ["key: required setting missing"]),
        ({"key": "u:{id}", "ttl_s": 0}, ["'ttl_s' must be > 0: 0"]),
        ({"key": "u:{id}", "ttl_s": 10, "not_found_ttl_s": 60}, ["not_found_ttl_s (60) must not exceed ttl_s (10)"]),
        ({"key": "u:{id}", "not_found_ttl_s": -1}, ["'not_found_ttl_s' must be >= 0: -1"]),
        ({"key": "u:{id}", "fail_open": "yes"}, ["fail_open: expected true or false, got 'yes'"]),
        ({"key": "u:{id.x}"}, ["key: bad template 'u:{id.x}': placeholder {id.x} must be a bare name such as {id}"]),
        ({"key": "u:{id}", "ttl": 5}, ["ttl: unknown setting 'ttl'"]),
    ],
)
def test_bad_cache_config(settings: dict[str, Any], expected: list[str]) -> None:
    assert structure_errors(settings, CacheConfig) == expected


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ["keys: required setting missing"]),
        ({"keys": []}, ["keys: name at least one key"]),
        ({"keys": "user:{id}"}, ["keys: expected a list of key templates such as [\"user:{id}\"], got 'user:{id}'"]),
        ({"keys": ["u:{"]}, ["keys: bad template 'u:{': Single '{' encountered in format string"]),
        ({"keys": ["u:{id}"], "tombstone_ttl_s": 0}, ["'tombstone_ttl_s' must be > 0: 0"]),
    ],
)
def test_bad_invalidate_config(settings: dict[str, Any], expected: list[str]) -> None:
    assert structure_errors(settings, CacheInvalidateConfig) == expected


def test_invalidate_key_placeholder_is_checked_with_its_line(tmp_path: Path) -> None:
    from app.pipeline.config import PipelineFileError
    from app.pipeline.registry import load_checked
    from app.plugins import make_plugin_manager

    path = tmp_path / "pipelines.toml"
    path.write_text(
        '[[pipelines]]\nname = "a"\nroute = "PATCH /u/{id}"\nsteps = [\n'
        '  { use = "cache-invalidate", keys = ["user:{id}", "x:{uid}"] },\n'
        '  { use = "data-fetch", call = "GET /u/{id}" },\n]\n'
    )
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, make_plugin_manager())
    assert [str(e) for e in info.value.errors] == [
        f"{path}:5: pipeline 'a', step 1 (cache-invalidate): keys: placeholder {{uid}} names no route parameter "
        "(route has: id)"
    ]
