"""The accounts steps' settings, structured as pipelines.toml gives them."""

from __future__ import annotations

from typing import Any

import pytest

from app.converter import converter, structure_errors
from plugins.accounts.config import RedeemConfig


def test_cache_keys_default_to_none_and_take_a_list_of_templates() -> None:
    assert converter.structure({}, RedeemConfig).cache_keys == ()
    assert converter.structure({"cache_keys": ["user:{id}"]}, RedeemConfig).cache_keys == ("user:{id}",)


@pytest.mark.parametrize(("settings", "expected"), [
    # A lone string would otherwise become one key per character.
    ({"cache_keys": "user:{id}"},
     ["cache_keys: expected a list of key templates such as [\"user:{id}\"], got 'user:{id}'"]),
    ({"cache_keys": ["user:{id"]}, ["cache_keys: bad template 'user:{id': expected '}' before end of string"]),
])
def test_bad_cache_keys_are_refused_with_their_setting_named(settings: dict[str, Any], expected: list[str]) -> None:
    assert structure_errors(settings, RedeemConfig) == expected
