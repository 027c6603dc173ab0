"""The event-emit step, run by the test kit: what it publishes, when, and what hooks do to it.

The embedded publisher writes each event to `var/events.jsonl`, which `Service.events()` reads;
the RabbitMQ path is covered end to end in tests/integration/test_events.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

import plugins.event_emit
from app import hookimpl
from app.converter import converter, iter_errors
from app.testing import Service, StartService
from plugins.event_emit.config import EventEmitConfig
from tests.cancelling import send_cancelled
from tests.fixtures import sample_plugin
from tests.fixtures.commit_plugin import CommitPlugin

PIPELINES = """
[[pipelines]]
name = "make_widget"
route = "POST /widgets/{slot:int}"
body = "Widget"
steps = [{ use = "event-emit", event = "widget.created" }, { use = "echo", status = 201 }]

[[pipelines]]
name = "drop_widget"
route = "DELETE /widgets/{slot:int}"
steps = [{ use = "event-emit", event = "widget.deleted" }, { use = "answer", status = 204 }, { use = "echo" }]

[[pipelines]]
name = "refused"
route = "POST /refused"
steps = [{ use = "event-emit", event = "widget.created" }, { use = "answer", status = 418 }, { use = "echo" }]
"""


class Enricher:
    @hookimpl
    def enrich_event(self, request: Any, pipeline: Any, event: dict[str, Any]) -> dict[str, Any] | bool | None:
        if event["data"].get("body", {}).get("name") == "secret":
            return False
        return {**event, "data": {**event["data"], "team": "widgets"}}


async def start(turnstile: StartService, *extra: object) -> Service:
    return await turnstile(PIPELINES, plugins=[sample_plugin, plugins.event_emit, *extra], entrypoints=False)


async def test_a_success_publishes_the_answer_as_the_event(turnstile: StartService) -> None:
    service = await start(turnstile)
    resp = await service.client.post("/widgets/4", json={"name": "w", "size": 1}, headers={"X-Request-ID": "ev-1"})
    assert resp.status == 201
    [event] = service.events()
    assert event["type"] == "widget.created"
    assert event["request_id"] == "ev-1"
    assert event["data"] == await resp.json()
    assert set(event) == {"id", "type", "occurred_at", "request_id", "data"}


async def test_an_answer_without_body_publishes_the_route_parameters(turnstile: StartService) -> None:
    service = await start(turnstile)
    assert (await service.client.delete("/widgets/9")).status == 204
    [event] = service.events()
    assert event["type"] == "widget.deleted"
    assert event["data"] == {"slot": 9}


async def test_a_failure_publishes_nothing(turnstile: StartService) -> None:
    service = await start(turnstile)
    assert (await service.client.post("/refused")).status == 418
    assert (await service.client.post("/widgets/1", json={"name": 5})).status == 422
    assert service.events() == []


async def test_enrich_event_can_change_or_suppress(turnstile: StartService) -> None:
    service = await start(turnstile, Enricher())
    await service.client.post("/widgets/1", json={"name": "w", "size": 1})
    await service.client.post("/widgets/2", json={"name": "secret", "size": 1})
    [event] = service.events()
    assert event["data"]["team"] == "widgets"
    assert event["data"]["params"] == {"slot": "1"}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"event": "user.created"}, None),
        ({"event": "created"}, "event must be a dotted routing key such as 'user.created', got 'created'"),
        ({"event": 5}, "event: expected a string, got 5"),
        ({}, "event: required setting missing"),
    ],
)
def test_config(settings: dict[str, Any], expected: str | None) -> None:
    try:
        config = converter.structure(settings, EventEmitConfig)
    except Exception as exc:
        messages = [f"{'.'.join(map(str, path))}: {msg}" if path else msg for path, msg in iter_errors(exc)]
        assert expected in messages
        return
    assert expected is None
    assert config.event == settings["event"]


# --- a change that is saved though a later step fails (contract §9) ------------------------
COMMITTED_PIPELINES = """
[[pipelines]]
name = "save_then_fail"
route = "PATCH /widgets/{slot:int}"
steps = [{ use = "event-emit", event = "widget.updated" }, { use = "fail-after" }, { use = "commit" }]

[[pipelines]]
name = "save_then_cancelled"
route = "PUT /widgets/{slot:int}"
steps = [{ use = "event-emit", event = "widget.updated" }, { use = "cancel-after" }, { use = "commit" }]

[[pipelines]]
name = "save"
route = "POST /widgets/{slot:int}"
steps = [{ use = "event-emit", event = "widget.updated" }, { use = "commit" }]

[[pipelines]]
name = "fail_before_saving"
route = "DELETE /widgets/{slot:int}"
steps = [
  { use = "event-emit", event = "widget.deleted" }, { use = "fail-after" }, { use = "boom" }, { use = "echo" },
]
"""


async def start_committing(turnstile: StartService, *extra: object) -> Service:
    plugins_used = [sample_plugin, plugins.event_emit, CommitPlugin(), *extra]
    return await turnstile(COMMITTED_PIPELINES, plugins=plugins_used, entrypoints=False)


async def test_a_saved_change_is_published_even_when_a_later_step_fails(turnstile: StartService) -> None:
    service = await start_committing(turnstile)
    resp = await service.client.patch("/widgets/3", headers={"X-Request-ID": "saved-1"})
    assert resp.status == 503
    [event] = service.events()
    assert event["type"] == "widget.updated"
    assert event["request_id"] == "saved-1"
    assert event["data"] == {"slot": 3, "name": "saved"}


async def test_a_failure_before_anything_was_saved_publishes_nothing(turnstile: StartService) -> None:
    service = await start_committing(turnstile)
    assert (await service.client.delete("/widgets/3")).status == 500
    assert service.events() == []


async def test_a_saved_change_is_published_even_when_its_request_is_cancelled(turnstile: StartService) -> None:
    service = await start_committing(turnstile)

    await send_cancelled(service.client.put("/widgets/3", headers={"X-Request-ID": "cancelled-1"}))

    # The event was published before the cancellation went on to close the connection.
    [event] = service.events()
    assert event["type"] == "widget.updated"
    assert event["request_id"] == "cancelled-1"
    assert event["data"] == {"slot": 3, "name": "saved"}


class FailingEnricher:
    """A team's enrichment with a bug: it fails on every event, after touching nothing."""

    @hookimpl
    def enrich_event(self, event: dict[str, Any]) -> dict[str, Any]:
        msg = "the team's enrichment has a bug"
        raise KeyError(msg)


def unenriched(event: str) -> float:
    return REGISTRY.get_sample_value("turnstile_events_unenriched_total", {"event": event}) or 0.0


async def test_a_saved_change_whose_enrichment_fails_is_published_without_it(turnstile: StartService) -> None:
    service = await start_committing(turnstile, FailingEnricher())
    before = unenriched("widget.updated")

    resp = await service.client.post("/widgets/3", headers={"X-Request-ID": "unenriched-1"})

    # The request answers the hook's failure, as any failing hook's request does; the change
    # it made is saved all the same, so its event goes out as it was made.
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    [event] = service.events()
    assert event["type"] == "widget.updated"
    assert event["request_id"] == "unenriched-1"
    assert event["data"] == {"slot": 3, "name": "saved"}
    assert unenriched("widget.updated") == before + 1


async def test_a_failed_enrichment_of_a_saved_change_that_then_fails_still_publishes(turnstile: StartService) -> None:
    service = await start_committing(turnstile, FailingEnricher())

    resp = await service.client.patch("/widgets/4")

    assert resp.status == 503  # the later step's own failure stands
    [event] = service.events()
    assert event["data"] == {"slot": 4, "name": "saved"}


async def test_a_failed_enrichment_without_a_saved_change_publishes_nothing(turnstile: StartService) -> None:
    service = await start(turnstile, FailingEnricher())
    before = unenriched("widget.created")

    resp = await service.client.post("/widgets/4", json={"name": "w", "size": 1})

    assert resp.status == 500
    assert service.events() == []
    assert unenriched("widget.created") == before


class Retyper:
    """A team's enrichment that renames what happened: consumers bound to the real key miss it."""

    @hookimpl
    def enrich_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "type": "Not A Key!"}


async def test_an_enrichment_may_not_change_the_events_id_or_type(turnstile: StartService) -> None:
    service = await start_committing(turnstile, Retyper())

    resp = await service.client.post("/widgets/3")

    assert resp.status == 500  # the hook's fault; the saved change still has its event, as made
    [event] = service.events()
    assert event["type"] == "widget.updated"
