"""A JSON body's shape is bounded before and right after it is parsed (app/pipeline/json_checks.py):
at most 10,000 objects and arrays, 64 levels of nesting, and no member named twice in one object."""

from __future__ import annotations

import types
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.pipeline import body as body_module
from app.pipeline.json_checks import LOCATED_MEMBERS, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH
from app.testing import StartService
from tests.app.conftest import CORE_PIPELINES
from tests.app.test_http import assert_problem
from tests.fixtures import sample_plugin

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}


async def post_widget(client: Client, raw: bytes) -> Any:
    return await client.post("/widgets/1", data=raw, headers=JSON)


def with_tags(tags: bytes) -> bytes:
    """A widget whose `tags` is the JSON text `tags`: one `{` of its own, no `[`."""
    return b'{"name": "w", "size": 2, "tags": ' + tags + b"}"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the JSON reader hands to orjson, in order."""
    seen: list[bytes] = []

    def loads(raw: bytes) -> Any:
        seen.append(raw)
        return orjson.loads(raw)

    spy = types.SimpleNamespace(loads=loads, JSONDecodeError=orjson.JSONDecodeError)
    monkeypatch.setattr(body_module, "orjson", spy)
    return seen


async def test_a_body_of_more_objects_and_arrays_than_the_bound_is_413_and_never_parsed(
    client: Client, parses: list[bytes],
) -> None:
    # 1 object + 1 list + 9,999 empty lists: one more than the bound.
    raw = with_tags(b"[" + b",".join([b"[]"] * (MAX_JSON_CONTAINERS - 1)) + b"]")

    problem = await assert_problem(await post_widget(client, raw), 413)

    assert problem["detail"] == (f"The request body holds more than {MAX_JSON_CONTAINERS} JSON objects and arrays "
                                 f"(counted as its '{{' and '[' characters); this route reads at most "
                                 f"{MAX_JSON_CONTAINERS}.")
    assert parses == []


async def test_a_body_at_the_bound_is_parsed_and_validated(client: Client, parses: list[bytes]) -> None:
    raw = with_tags(b"[" + b",".join([b"[]"] * (MAX_JSON_CONTAINERS - 2)) + b"]")

    problem = await assert_problem(await post_widget(client, raw), 422)

    assert problem["errors"] == [{"loc": ["body", "tags"], "msg": "must have at most 1000 items"}]
    assert parses == [raw]


async def test_brackets_inside_strings_count_toward_the_bound(client: Client) -> None:
    # The count needs no parse, so it cannot tell a string's brackets from the body's.
    raw = b'{"name": "' + b"[" * MAX_JSON_CONTAINERS + b'", "size": 2}'

    await assert_problem(await post_widget(client, raw), 413)


async def test_a_model_sets_its_own_bound(turnstile: StartService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_plugin.Widget, "max_json_containers", 3, raising=False)
    client = (await turnstile(CORE_PIPELINES, plugins=[sample_plugin], entrypoints=False)).client

    problem = await assert_problem(await post_widget(client, with_tags(b'[["a"], ["b"]]')), 413)
    assert str(problem["detail"]).endswith("this route reads at most 3.")
    assert (await post_widget(client, with_tags(b'["a", "b"]'))).status == 201


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1000])
async def test_a_body_nested_past_the_bound_is_400_not_500(client: Client, levels: int) -> None:
    # The body is level 1 and `tags` level 2: the lists inside make up the rest. orjson takes
    # 1,024 levels; the validators and their messages recurse, and would meet Python's limit.
    inner = levels - 1
    raw = with_tags(b"[" * inner + b"]" * inner)

    problem = await assert_problem(await post_widget(client, raw), 400)

    assert problem["detail"] == f"The request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep."


async def test_a_body_nested_to_the_bound_is_validated(client: Client) -> None:
    inner = MAX_JSON_DEPTH - 1
    raw = with_tags(b"[" * inner + b"]" * inner)

    problem = await assert_problem(await post_widget(client, raw), 422)

    assert problem["errors"] == [{"loc": ["body", "tags", 0], "msg": "expected a string"}]


@pytest.mark.parametrize("name", ["a:b", 'a\\":b', "a\\\\", ":"])
async def test_colons_and_escapes_inside_strings_neither_hide_nor_invent_a_repeat(client: Client, name: str) -> None:
    fine = b'{"name": "' + name.encode() + b'", "size": 2, "tags": [":"]}'
    assert (await post_widget(client, fine)).status == 201

    repeated = b'{"name": "' + name.encode() + b'", "size": 2, "size": 3, "tags": [":"]}'
    problem = await assert_problem(await post_widget(client, repeated), 422)
    assert problem["errors"] == [{"loc": ["body", "size"], "msg": "sent more than once"}]


async def test_a_repeat_in_a_body_of_more_members_than_are_located_is_one_error_at_its_root(client: Client) -> None:
    # Finding where takes a second parse at ~1 µs a member; past LOCATED_MEMBERS the 422 says
    # what is wrong without it.
    extra = b",".join(b'"k%d": ":"' % n for n in range(LOCATED_MEMBERS))
    raw = b'{"name": "w", "size": 2, "size": 3, "meta": {' + extra + b"}}"

    problem = await assert_problem(await post_widget(client, raw), 422)

    assert problem["errors"] == [{"loc": ["body"], "msg": "has a member sent more than once"}]


async def test_a_list_where_the_model_wants_an_object_is_one_error(client: Client) -> None:
    raw = b"[" + b",".join([b'"a"'] * 100_000) + b"]"

    problem = await assert_problem(await post_widget(client, raw), 422)

    assert problem["errors"] == [{"loc": ["body"], "msg": "expected a JSON object"}]
