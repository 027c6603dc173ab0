from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pytest_aiohttp import AiohttpClient, AiohttpServer

import plugins.cache
import plugins.data_fetch
from app.main import create_app
from app.pipeline.config import PipelineFileError
from app.plugins import make_plugin_manager
from app.settings import Settings
from plugins.cache.backend import cache_backend_key
from plugins.cache.markers import NOT_FOUND_MARKER
from tests.plugins.data_fetch.apps import FakeUpstream, answer_probes, make_client, start_fake, write_pipelines
from tests.services import start_service, stop_service

PIPELINES = """
[[pipelines]]
name = "get_NAME"
route = "GET /things/{id}"
steps = [
  { use = "cache", key = "PREFIX:thing:{id}", ttl_s = 60, not_found_ttl_s = NOT_FOUND_TTL },
  { use = "data-fetch", call = "GET /api/v1/things/{id}" },
]

[[pipelines]]
name = "strict_NAME"
route = "GET /strict/{id}"
steps = [
  { use = "cache", key = "PREFIX:strict:{id}", ttl_s = 60, fail_open = false },
  { use = "data-fetch", call = "GET /api/v1/things/{id}" },
]

[[pipelines]]
name = "update_NAME"
route = "PATCH /things/{id}"
steps = [
  { use = "cache-invalidate", keys = ["PREFIX:thing:{id}"], tombstone_ttl_s = 1 },
  { use = "data-fetch", call = "PATCH /api/v1/things/{id}" },
]
"""

Client = TestClient[web.Request, web.Application]


@pytest.fixture(params=["memory", "redis"])
def cache_redis_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "memory" else str(request.getfixturevalue("redis_url"))


async def cache_client(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, *,
    fake: FakeUpstream, redis_url: str | None, not_found_ttl_s: int = 1,
) -> Client:
    pipelines = (
        PIPELINES.replace("PREFIX", f"test:{unique}").replace("NAME", f"t{unique}")
        .replace("NOT_FOUND_TTL", str(not_found_ttl_s))
    )
    url = await start_fake(aiohttp_server, fake)
    return await make_client(aiohttp_client, tmp_path, pipelines, data_service_url=url, redis_url=redis_url)


def counted(unique: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "turnstile_cache_requests_total", {"pipeline": f"get_t{unique}", "result": result}
    )
    return value or 0.0


async def test_miss_then_hit(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream(body=b'{"id": 7, "name": "seven"}')
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)

    miss = await client.get("/things/7")
    assert miss.status == 200
    assert miss.headers["X-Cache"] == "MISS"
    assert miss.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    assert await miss.json() == {"id": 7, "name": "seven"}

    hit = await client.get("/things/7")
    assert hit.status == 200
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["Cache-Status"] == "turnstile; hit"
    assert hit.content_type == "application/json"
    assert await hit.json() == {"id": 7, "name": "seven"}
    assert "X-Request-ID" in hit.headers

    assert fake.calls == 1
    assert (counted(unique, "miss"), counted(unique, "hit"), counted(unique, "bypass")) == (1, 1, 0)


async def test_concurrent_misses_on_one_key_make_one_upstream_call(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream(delay_s=0.2)
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)

    responses = await asyncio.gather(*(client.get("/things/7") for _ in range(50)))

    assert fake.calls == 1
    assert [r.status for r in responses] == [200] * 50
    bodies = {await r.read() for r in responses}
    assert bodies == {fake.body}
    assert {r.headers["X-Cache"] for r in responses} == {"MISS"}
    collapsed = [r for r in responses if r.headers["Cache-Status"].endswith("; collapsed")]
    assert len(collapsed) == 49
    assert len({r.headers["X-Request-ID"] for r in responses}) == 50


async def test_not_found_is_cached_only_briefly(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream(status=404, body=b'{"detail": "no such thing"}', content_type="application/problem+json")
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)

    first = await client.get("/things/7")
    assert first.status == 404
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=404; stored"
    second = await client.get("/things/7")
    assert second.status == 404
    assert second.content_type == "application/problem+json"
    assert second.headers["X-Cache"] == "HIT"
    assert fake.calls == 1

    fake.status, fake.content_type, fake.body = 200, "application/json", b'{"id":7}'
    # not_found_ttl_s = 1, far below ttl_s; with Redis the key's prefix is mirrored in process
    # memory, and the copy goes when Redis expires the key (its active expiry: ~100 ms later).
    await asyncio.sleep(1.5)
    created = await client.get("/things/7")
    assert created.status == 200
    assert created.headers["X-Cache"] == "MISS"
    assert fake.calls == 2


async def test_not_found_ttl_zero_disables_negative_caching(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str
) -> None:
    fake = FakeUpstream(status=404, body=b"{}", content_type="application/problem+json")
    client = await cache_client(
        aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=None, not_found_ttl_s=0
    )

    for _ in range(2):
        response = await client.get("/things/7")
        assert response.status == 404
        assert response.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=404"
    assert fake.calls == 2


async def test_a_not_found_marker_another_configuration_wrote_is_a_miss_where_404s_are_not_cached(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    # During a rolling upgrade older pods cached a 404 for 30 s: a user who registered since read
    # their own record as missing on the new pods, which cache no 404.
    fake = FakeUpstream(body=b'{"id":7}')
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake,
                                redis_url=cache_redis_url, not_found_ttl_s=0)
    backend = client.app[cache_backend_key]
    key = f"test:{unique}:thing:7"
    await backend.set(key, NOT_FOUND_MARKER, 30)

    response = await client.get("/things/7")
    assert response.status == 200
    assert response.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    assert await backend.get(key) == b'{"id":7}'  # the marker replaced by the record
    assert (await client.get("/things/7")).headers["X-Cache"] == "HIT"
    assert fake.calls == 1


async def test_upstream_errors_are_not_cached(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str
) -> None:
    fake = FakeUpstream(status=500, body=b"boom", content_type="text/plain")
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=None)

    for _ in range(2):
        response = await client.get("/things/7")
        assert response.status == 502
        assert response.headers["X-Cache"] == "MISS"
    assert fake.calls == 2


async def test_invalidate_tombstones_after_success_only(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream()
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)
    await client.get("/things/7")
    assert (await client.get("/things/7")).headers["X-Cache"] == "HIT"

    fake.status, fake.content_type, fake.body = 409, "application/problem+json", b'{"detail": "taken"}'
    failed = await client.patch("/things/7")
    assert failed.status == 409
    fake.status, fake.content_type, fake.body = 200, "application/json", b'{"id":7}'
    assert (await client.get("/things/7")).headers["X-Cache"] == "HIT"

    updated = await client.patch("/things/7")
    assert updated.status == 200
    after = await client.get("/things/7")
    assert after.headers["X-Cache"] == "MISS"
    assert after.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"  # replaced the tombstone
    assert await after.read() == b'{"id":7}'
    again = await client.get("/things/7")
    assert again.headers["X-Cache"] == "HIT"
    assert await again.read() == b'{"id":7}'


class RacingUpstream:
    """A data service whose GETs read the record on arrival, then wait for `release` to answer."""

    def __init__(self) -> None:
        self.record = b'{"id":7,"name":"old"}'
        self.get_arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.hold_next_get = True

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "PATCH":
            self.record = b'{"id":7,"name":"new"}'
            return web.json_response(body=self.record)
        snapshot = self.record
        if self.hold_next_get:
            self.hold_next_get = False
            self.get_arrived.set()
            await self.release.wait()
        return web.json_response(body=snapshot)


async def racing_client(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, *,
    upstream: RacingUpstream, redis_url: str | None,
) -> Client:
    pipelines = (
        PIPELINES.replace("PREFIX", f"test:{unique}").replace("NAME", f"t{unique}").replace("NOT_FOUND_TTL", "1")
        .replace("tombstone_ttl_s = 1", "tombstone_ttl_s = 30")  # no tombstone expires mid-test
    )
    app = web.Application()
    answer_probes(app)
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    return await make_client(aiohttp_client, tmp_path, pipelines, data_service_url=url, redis_url=redis_url)


async def test_a_fill_racing_a_write_does_not_cache_the_old_record(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    upstream = RacingUpstream()
    client = await racing_client(
        aiohttp_client, aiohttp_server, tmp_path, unique, upstream=upstream, redis_url=cache_redis_url
    )

    slow_read = asyncio.create_task(client.get("/things/7"))  # misses, then reads the old record
    await asyncio.wait_for(upstream.get_arrived.wait(), 5)
    assert (await client.patch("/things/7")).status == 200  # commits, then invalidates
    upstream.release.set()
    raced = await slow_read

    assert await raced.json() == {"id": 7, "name": "old"}  # as of when it was read
    assert raced.headers["X-Cache"] == "MISS"
    assert raced.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200"  # refused: not stored
    after = await client.get("/things/7")
    assert after.headers["X-Cache"] == "MISS"
    assert after.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    assert await after.json() == {"id": 7, "name": "new"}
    cached = await client.get("/things/7")
    assert cached.headers["X-Cache"] == "HIT"
    assert await cached.json() == {"id": 7, "name": "new"}


async def test_a_fill_that_saw_an_older_tombstone_cannot_replace_a_newer_one(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    upstream = RacingUpstream()
    client = await racing_client(
        aiohttp_client, aiohttp_server, tmp_path, unique, upstream=upstream, redis_url=cache_redis_url
    )
    assert (await client.patch("/things/7")).status == 200  # tombstone T0
    upstream.record = b'{"id":7,"name":"old"}'  # as if the first write had set "old"

    slow_read = asyncio.create_task(client.get("/things/7"))  # finds T0, then reads "old"
    await asyncio.wait_for(upstream.get_arrived.wait(), 5)
    assert (await client.patch("/things/7")).status == 200  # commits "new", then tombstone T1
    upstream.release.set()
    raced = await slow_read

    assert await raced.json() == {"id": 7, "name": "old"}
    assert raced.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200"  # its T0 is gone: not stored
    after = await client.get("/things/7")  # still T1: a miss, which now replaces T1
    assert after.headers["X-Cache"] == "MISS"
    assert after.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    assert await after.json() == {"id": 7, "name": "new"}
    assert (await client.get("/things/7")).headers["X-Cache"] == "HIT"


async def test_a_read_after_a_write_does_not_share_a_fetch_that_began_before_it(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    upstream = RacingUpstream()
    client = await racing_client(
        aiohttp_client, aiohttp_server, tmp_path, unique, upstream=upstream, redis_url=cache_redis_url
    )
    slow_read = asyncio.create_task(client.get("/things/7"))  # found nothing, reads "old", held
    await asyncio.wait_for(upstream.get_arrived.wait(), 5)
    assert (await client.patch("/things/7")).status == 200

    fresh = await client.get("/things/7")  # finds the tombstone: its own fetch, not the held one
    assert await fresh.json() == {"id": 7, "name": "new"}
    assert fresh.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    upstream.release.set()
    raced = await slow_read
    assert await raced.json() == {"id": 7, "name": "old"}
    assert raced.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200"  # the key is taken

    cached = await client.get("/things/7")
    assert cached.headers["X-Cache"] == "HIT"
    assert await cached.json() == {"id": 7, "name": "new"}


async def test_a_tombstone_reads_as_a_miss_whose_answer_replaces_it(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream(body=b'{"id":7}', delay_s=0.2)
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)
    assert (await client.patch("/things/7")).status == 200

    responses = await asyncio.gather(*(client.get("/things/7") for _ in range(10)))

    assert fake.calls == 1 + 1  # the PATCH, one shared fetch
    assert {r.headers["X-Cache"] for r in responses} == {"MISS"}
    statuses = sorted(r.headers["Cache-Status"] for r in responses)
    assert statuses == ["turnstile; fwd=uri-miss; fwd-status=200; stored"] + [
        "turnstile; fwd=uri-miss; fwd-status=200; stored; collapsed"
    ] * 9
    assert {await r.read() for r in responses} == {b'{"id":7}'}
    hit = await client.get("/things/7")
    assert hit.headers["X-Cache"] == "HIT"
    assert fake.calls == 2
    assert (counted(unique, "miss"), counted(unique, "hit")) == (10, 1)


async def test_a_not_found_answer_replaces_a_tombstone_with_the_404_marker(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream()
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)
    assert (await client.patch("/things/7")).status == 200
    fake.status, fake.content_type, fake.body = 404, "application/problem+json", b'{"detail": "gone"}'

    first = await client.get("/things/7")
    assert first.status == 404
    assert first.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=404; stored"
    second = await client.get("/things/7")
    assert second.status == 404
    assert second.headers["X-Cache"] == "HIT"


async def test_a_tombstone_that_no_read_replaces_expires(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str,
    cache_redis_url: str | None,
) -> None:
    fake = FakeUpstream(body=b'{"id":7}')
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=cache_redis_url)
    assert (await client.patch("/things/7")).status == 200

    await asyncio.sleep(1.1)  # tombstone_ttl_s = 1
    resumed = await client.get("/things/7")  # an empty key: add-if-absent
    assert resumed.headers["Cache-Status"] == "turnstile; fwd=uri-miss; fwd-status=200; stored"
    assert (await client.get("/things/7")).headers["X-Cache"] == "HIT"


async def test_cache_bypasses_when_redis_down_and_recovers_by_itself(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str, redis_url: str
) -> None:
    fake = FakeUpstream()
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=fake, redis_url=redis_url)
    assert (await client.get("/things/7")).headers["X-Cache"] == "MISS"

    await stop_service("redis")
    try:
        bypass = await client.get("/things/7")
        assert bypass.status == 200
        assert bypass.headers["X-Cache"] == "BYPASS"
        assert bypass.headers["Cache-Status"] == "turnstile; fwd=bypass; fwd-status=200; detail=unavailable"
        assert await bypass.read() == fake.body
        assert (await client.get("/strict/7")).status == 503
        assert (await client.patch("/things/7")).status == 200  # the write stands
        assert counted(unique, "bypass") == 1
    finally:
        await start_service("redis")

    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        response = await client.get("/things/7")
        assert response.status == 200
        seen.append(response.headers["X-Cache"])
        if seen[-1] == "HIT":
            break
        await asyncio.sleep(0.1)
    assert seen[-1] == "HIT", seen


async def test_document_adds_cache_headers_to_the_success_response(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path, unique: str
) -> None:
    client = await cache_client(aiohttp_client, aiohttp_server, tmp_path, unique, fake=FakeUpstream(), redis_url=None)

    document = await (await client.get("/api/docs/swagger.json")).json()

    ok = document["paths"]["/things/{id}"]["get"]["responses"]["200"]
    assert ok["description"] == "Success"
    assert {"X-Cache", "Cache-Status"} <= set(ok["headers"])


async def test_invalidate_key_naming_no_route_param_refuses_to_start(tmp_path: Path) -> None:
    pipelines = """
[[pipelines]]
name = "update_thing"
route = "PATCH /things/{id}"
steps = [
  { use = "cache-invalidate", keys = ["thing:{name}"] },
  { use = "data-fetch", call = "PATCH /api/v1/things/{id}" },
]
"""
    settings = Settings(pipelines_file=write_pipelines(tmp_path, pipelines), data_service_url="http://127.0.0.1:1")
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.cache, plugins.data_fetch])

    with pytest.raises(PipelineFileError, match=r"placeholder \{name\} names no route parameter \(route has: id\)"):
        create_app(settings, pm=pm)
