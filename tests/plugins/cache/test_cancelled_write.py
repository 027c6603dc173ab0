"""A write the data service accepted is followed through when its request is cancelled after
it (the end of the process cancels a request still running, say): the cache key is tombstoned
and the event published, as when a later step fails (contract §9)."""

from __future__ import annotations

import plugins.cache
import plugins.event_emit
from app.testing import StartService
from plugins.cache.backend import cache_backend_key
from plugins.cache.markers import is_tombstone
from tests.cancelling import send_cancelled
from tests.fixtures import sample_plugin
from tests.fixtures.commit_plugin import CommitPlugin

PIPELINES = """
[[pipelines]]
name = "save_then_cancelled"
route = "PUT /widgets/{slot:int}"
steps = [
  { use = "event-emit", event = "widget.updated" },
  { use = "cache-invalidate", keys = ["widget:{slot}"] },
  { use = "cancel-after" },
  { use = "commit" },
]
"""


async def test_a_saved_change_cancelled_after_it_is_uncached_and_published(turnstile: StartService) -> None:
    service = await turnstile(PIPELINES, plugins=[sample_plugin, plugins.cache, plugins.event_emit, CommitPlugin()],
                              entrypoints=False)
    cache = service.client.app[cache_backend_key]
    await cache.set("widget:3", b'{"slot": 3, "name": "old"}', 60)

    await send_cancelled(service.client.put("/widgets/3", headers={"X-Request-ID": "cancelled-2"}))

    # The follow-ups were awaited before the cancellation went on to close the connection.
    stored = await cache.get("widget:3")
    assert stored is not None
    assert is_tombstone(stored)
    assert [event["request_id"] for event in service.events()] == ["cancelled-2"]
