"""Subscriptions as pipelines.toml declares them: delivery, queue type, and which failures wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pluggy
import pytest
from aiohttp import web

import plugins.cache
from app import hookimpl
from app.clients.cache import CacheUnavailable
from app.clients.redis import RedisUnavailable
from app.errors import BadGateway, GatewayTimeout, NotFound, ServiceUnavailable
from app.main import create_app
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked
from app.pipeline.subscriptions import consumers_key, depends_on_something_down
from app.plugins import make_plugin_manager
from app.settings import load_settings

SUBSCRIPTIONS = """
[[subscriptions]]
name = "shared_one"
queue = "test.shared"
bindings = ["user.updated"]
steps = [{ use = "cache-invalidate", keys = ["user:{id}"] }]

[[subscriptions]]
name = "mine"
delivery = "each-instance"
queue = "test.mine"
bindings = ["user.updated"]
max_wait_s = 30
steps = [{ use = "cache-invalidate", keys = ["user:{id}"] }]
"""


def app_for(tmp_path: Path, text: str, **environ: str) -> web.Application:
    path = tmp_path / "pipelines.toml"
    path.write_text(text)
    settings = attrs.evolve(
        load_settings({"RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/", **environ}),
        pipelines_file=path, var_dir=tmp_path / "var",
    )
    return create_app(settings, pm=make_plugin_manager(entrypoints=False, extra=[plugins.cache]))


def check_errors(tmp_path: Path, text: str, pm: pluggy.PluginManager | None = None) -> list[str]:
    """What `turnstile check` says of `text` (it must find something): each error without its file."""
    path = tmp_path / "pipelines.toml"
    path.write_text(text)
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, pm or make_plugin_manager(entrypoints=False, extra=[plugins.cache]))
    return [str(e)[len(str(path)) + 1 :] for e in info.value.errors]


def test_each_subscription_gets_the_queue_its_delivery_needs(tmp_path: Path) -> None:
    shared, mine = app_for(tmp_path, SUBSCRIPTIONS)[consumers_key]
    assert (shared.topology.delivery, shared.queue, shared.topology.queue_type) == ("shared", "test.shared", "quorum")
    assert shared.topology.arguments()["x-queue-type"] == "quorum"
    assert shared.topology.arguments()["x-delivery-limit"] == 3
    assert mine.topology.delivery == "each-instance"
    assert mine.queue.startswith("test.mine.")
    assert "x-queue-type" not in mine.topology.arguments()  # exclusive: always classic


def test_a_setting_keeps_classic_queues_for_brokers_without_quorum(tmp_path: Path) -> None:
    shared, _mine = app_for(tmp_path, SUBSCRIPTIONS, RABBITMQ_QUEUE_TYPE="classic")[consumers_key]
    assert shared.topology.queue_type == "classic"
    assert "x-queue-type" not in shared.topology.arguments()


def test_a_queue_type_other_than_quorum_or_classic_is_refused() -> None:
    with pytest.raises(Exception, match="RABBITMQ_QUEUE_TYPE='stream': expected one of quorum, classic"):
        load_settings({"RABBITMQ_QUEUE_TYPE": "stream"})


def test_an_unknown_delivery_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = SUBSCRIPTIONS.replace('delivery = "each-instance"', 'delivery = "everyone"')
    assert check_errors(tmp_path, text) == [
        """8: subscriptions[1]: delivery: expected "shared" or "each-instance", got 'everyone'"""
    ]


@pytest.mark.parametrize(
    ("exc", "waits"),
    [
        (RedisUnavailable("down"), True),
        (CacheUnavailable("down"), True),
        (ServiceUnavailable("data service down"), True),
        (GatewayTimeout("slow"), True),
        (TimeoutError(), True),
        (BadGateway("bad answer"), False),
        (NotFound("no such user"), False),
        (KeyError("id"), False),
    ],
)
def test_only_a_dependency_down_makes_a_message_wait(exc: BaseException, waits: bool) -> None:
    assert depends_on_something_down(exc) is waits


def test_two_subscriptions_on_one_queue_are_an_error_with_both_lines(tmp_path: Path) -> None:
    # Their consumers would share the queue's messages: each event handled by one of them only.
    text = SUBSCRIPTIONS.replace('queue = "test.mine"', 'queue = "test.shared"')
    assert check_errors(tmp_path, text) == [
        "11: subscription 'mine': queue 'test.shared' is taken by subscription 'shared_one' (line 2): "
        "each needs a queue of its own, and .dead after it is its dead letters'"
    ]


PUBLISHERS = """
[[pipelines]]
name = "delete_user"
route = "DELETE /api/v1/users/{id}"
steps = [
  { use = "event-emit", event = "user.deleted" },
  { use = "data-fetch", call = "DELETE /api/v1/users/{id}", status = 204 },
]

[[pipelines]]
name = "update_user"
route = "PATCH /api/v1/users/{id}"
body = "UserPatch"
steps = [
  { use = "event-emit", event = "user.updated" },
  { use = "data-fetch", call = "PATCH /api/v1/users/{id}", response = "User" },
]
"""


def subscribed(bindings: str, keys: str) -> str:
    return PUBLISHERS + f"""
[[subscriptions]]
name = "changes"
queue = "test.changes"
bindings = {bindings}
steps = [{{ use = "cache-invalidate", keys = {keys} }}]
"""


def test_a_subscription_placeholder_naming_no_field_of_its_events_is_an_error_with_its_line(tmp_path: Path) -> None:
    # It failed every message at run time (retried, then dead-lettered); `check` said OK.
    text = subscribed('["user.updated", "user.deleted"]', '["user:{nope}", "user:{id}", "mail:{email}"]')
    assert check_errors(tmp_path, text, make_plugin_manager()) == [
        "23: subscription 'changes', step 1 (cache-invalidate): keys: placeholder {nope} names no field of "
        "every event it receives (user.updated, user.deleted: id)",
        # user.deleted carries the id alone: {email} fails on every deletion
        "23: subscription 'changes', step 1 (cache-invalidate): keys: placeholder {email} names no field of "
        "every event it receives (user.updated, user.deleted: id)",
    ]


def test_fields_of_every_event_received_pass(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text(subscribed('["user.updated"]', '["user:{id}", "mail:{email}"]'))
    load_checked(path, make_plugin_manager())


@pytest.mark.parametrize("bindings", ['["user.*"]', '["order.created"]'])
def test_events_of_other_producers_are_not_second_guessed(tmp_path: Path, bindings: str) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text(subscribed(bindings, '["order:{order_id}"]'))
    load_checked(path, make_plugin_manager())


def test_with_a_plugin_that_enriches_events_any_field_may_be_there(tmp_path: Path) -> None:
    class Enricher:
        @hookimpl
        def enrich_event(self, request: Any, pipeline: Any, event: dict[str, Any]) -> None:
            return None

    path = tmp_path / "pipelines.toml"
    path.write_text(subscribed('["user.updated"]', '["tenant:{tenant}"]'))
    load_checked(path, make_plugin_manager(extra=[Enricher()]))


@pytest.mark.parametrize("bindings", ['["user.updated"]', '["order.created"]'])
def test_the_caller_placeholder_in_a_subscription_is_an_error_whatever_it_receives(
    tmp_path: Path, bindings: str
) -> None:
    # {actor} is the caller of a request: every message failed on it and was dead-lettered.
    assert check_errors(tmp_path, subscribed(bindings, '["user:{actor}"]'), make_plugin_manager()) == [
        "23: subscription 'changes', step 1 (cache-invalidate): keys: placeholder {actor} names the caller of a "
        "request, and an event has none",
    ]


def test_a_subscription_on_another_ones_dead_letter_queue_is_an_error(tmp_path: Path) -> None:
    text = SUBSCRIPTIONS.replace('queue = "test.mine"', 'queue = "test.shared.dead"')
    assert check_errors(tmp_path, text) == [
        "11: subscription 'mine': queue 'test.shared.dead' is taken by subscription 'shared_one' (line 2): each "
        "needs a queue of its own, and .dead after it is its dead letters'"
    ]
