"""Request bodies with a Content-Encoding are decoded by the body reader, within the 1 MiB limit
(app/pipeline/content_coding.py), never by aiohttp, which would inflate even a body's unread rest."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from app.pipeline.content_coding import MAX_GZIP_MEMBERS
from tests.app.test_http import assert_problem
from tests.content_coding import MIB, gzip_bomb

Client = TestClient[web.Request, web.Application]
WIDGET = orjson.dumps({"name": "w", "size": 2})


def post(client: Client, raw: bytes, coding: str, path: str = "/widgets/1") -> Any:
    return client.post(path, data=raw, headers={"Content-Type": "application/json", "Content-Encoding": coding})


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "GZIP"])
async def test_a_gzip_body_is_decoded(client: Client, coding: str) -> None:
    resp = await post(client, gzip.compress(WIDGET), coding)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["body"] == {"name": "w", "size": 2}


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "bare-deflate"])
async def test_a_deflate_body_is_decoded_in_either_framing(client: Client, wbits: int) -> None:
    deflater = zlib.compressobj(6, zlib.DEFLATED, wbits)
    resp = await post(client, deflater.compress(WIDGET) + deflater.flush(), "deflate")
    assert resp.status == 201, await resp.text()


async def test_a_body_that_inflates_past_the_limit_is_413_and_aiohttp_inflates_none_of_it(
    client: Client, inflated_by_aiohttp: list[int],
) -> None:
    bomb = gzip_bomb(64)
    assert len(bomb) < 100_000

    problem = await assert_problem(await post(client, bomb, "gzip"), 413)

    assert problem["detail"] == "The request body is larger than allowed (1 MiB) once decoded."
    assert inflated_by_aiohttp == []


async def test_a_bomb_sent_where_the_body_is_never_read_is_not_inflated(
    client: Client, inflated_by_aiohttp: list[int],
) -> None:
    # A route without a body model answers without reading; aiohttp then drains the rest of the
    # body, which it used to inflate (1 GB of it from a 1 MB request held the loop two seconds).
    resp = await post(client, gzip_bomb(64), "gzip", path="/things/a")
    assert resp.status < 500
    await resp.read()

    assert inflated_by_aiohttp == []


async def test_a_body_just_under_the_limit_once_decoded_is_read(client: Client) -> None:
    name_room = MIB - len(b'{"name": "", "size": 2}')
    raw = gzip.compress(b'{"name": "' + b"n" * name_room + b'", "size": 2}')

    problem = await assert_problem(await post(client, raw, "gzip"), 422)

    assert problem["errors"] == [{"loc": ["body", "name"], "msg": "must be at most 50 characters"}]


@pytest.mark.parametrize("raw", [gzip.compress(WIDGET)[:-8], gzip.compress(WIDGET) + b"trailing"],
                         ids=["truncated", "trailing-bytes"])
async def test_a_body_cut_short_or_with_bytes_after_its_end_is_400(client: Client, raw: bytes) -> None:
    await assert_problem(await post(client, raw, "gzip"), 400)


async def test_a_gzip_body_of_several_members_is_decoded_whole(client: Client) -> None:
    # RFC 1952 §2.2: members one after the other, as concatenated .gz files are.
    half = len(WIDGET) // 2
    resp = await post(client, gzip.compress(WIDGET[:half]) + gzip.compress(WIDGET[half:]), "gzip")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["body"] == {"name": "w", "size": 2}


async def test_members_that_together_inflate_past_the_limit_are_413(client: Client) -> None:
    member = gzip.compress(b" " * (MIB // 2))
    await assert_problem(await post(client, gzip.compress(WIDGET) + member + member, "gzip"), 413)


async def test_a_body_of_more_members_than_any_client_sends_is_400(client: Client) -> None:
    # Each member costs a new decompressor: thousands of empty ones would be a cheap way to spin.
    empty = gzip.compress(b"")
    assert (await post(client, gzip.compress(WIDGET) + empty * (MAX_GZIP_MEMBERS - 1), "gzip")).status == 201
    await assert_problem(await post(client, gzip.compress(WIDGET) + empty * MAX_GZIP_MEMBERS, "gzip"), 400)


async def test_a_deflate_body_has_one_stream_only(client: Client) -> None:
    once = zlib.compress(WIDGET)
    await assert_problem(await post(client, once + once, "deflate"), 400)


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, gzip", "compress"])
async def test_a_coding_not_taken_is_415_naming_those_that_are(client: Client, coding: str) -> None:
    resp = await post(client, WIDGET, coding)

    problem = await assert_problem(resp, 415)

    assert resp.headers["Accept-Encoding"] == "gzip, deflate"  # RFC 7694 §3
    assert "gzip, deflate" in str(problem["detail"])


async def test_a_coding_on_two_header_lines_is_the_same_list_as_on_one(client: Client) -> None:
    # RFC 9110 §5.3: two `gzip` lines are `gzip, gzip`, a coding applied twice. The second line
    # was ignored: the body was inflated once, as though it had been coded once.
    twice = gzip.compress(gzip.compress(WIDGET))
    headers = CIMultiDict([("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
                           ("Content-Encoding", "gzip")])
    await assert_problem(await client.post("/widgets/1", data=twice, headers=headers), 415)


async def test_identity_is_no_coding(client: Client) -> None:
    assert (await post(client, WIDGET, "identity")).status == 201
