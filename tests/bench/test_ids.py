"""Uncached reads get ids no read has touched since their cache entries were deleted."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import coredis
import pytest

from bench import wrk
from bench.ids import MAX_UNCACHED_RPS, FreshIds, forget_cache_entries

IDS_REDIS_DB = 12  # the benchmark tests' database (test_baseline.py empties it too)


def read_upto(last_id: int) -> wrk.Result:
    return wrk.Result(requests=1, seconds=1.0, p50_ms=1.0, p99_ms=1.0, max_ms=1.0, statuses={"200": 1},
                      socket_errors=0, last_ids=(last_id,))


def test_ids_count_up_across_runs_and_start_over_after_forgetting_what_was_read() -> None:
    forgotten: list[int] = []
    ids = FreshIds(last=3 * MAX_UNCACHED_RPS, forget=forgotten.append)
    assert ids.take(1) == 1
    ids.used(read_upto(5_000))
    assert ids.take(1) == 5_001
    ids.used(read_upto(17_000))
    assert forgotten == []
    assert ids.take(1) == 1  # 17,001 + a second's worth would pass the end
    assert forgotten == [17_000]
    assert ids.take(10, share=0.1) == 1  # a mixed run reads a tenth as many


def test_a_run_past_the_seeded_range_is_refused() -> None:
    ids = FreshIds(last=100, forget=lambda _: None)
    with pytest.raises(RuntimeError, match="ran out of seeded ids"):
        ids.used(read_upto(101))


async def test_forgetting_deletes_each_prefix_up_to_the_last_id_read(redis_url: str) -> None:
    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{IDS_REDIS_DB}"))
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        await client.flushdb()
        for i in range(1, 2_503):
            await client.set(f"a:user:{i}", "x")
            await client.set(f"b:user:{i}", "x")
        forget_cache_entries(url, ("a:user:", "b:user:"), 2_500)
        left = sorted(await client.keys("*"))
        await client.flushdb()
    assert left == ["a:user:2501", "a:user:2502", "b:user:2501", "b:user:2502"]
