"""The AsyncAPI document of the events, as built from a pipelines file and the plugins' models,
checked by the official AsyncAPI parser and against what the service really publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from app import EventsDoc, StepKind, StepType, hookimpl
from app.asyncapi import build_asyncapi
from app.models.events import BODY_KEYS
from app.models.json_schema import to_json_schema
from app.models.schema import schema_of
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked
from app.pipeline.topics import topic_matches
from app.plugins import make_plugin_manager
from plugins.users.models import PUBLIC_FIELDS, User
from tests.asyncapi import audit_plugin
from tests.asyncapi.conftest import DEFAULT_PIPELINES, Parse, audit_queue

USER_KEYS = ["user.created", "user.deleted", "user.updated"]


def document_of(path: Path, *plugins: object, exchange: str = "users") -> dict[str, Any]:
    registry, pipelines = load_checked(path, make_plugin_manager(extra=plugins))
    return build_asyncapi(pipelines, registry.models, exchange=exchange)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """What a local `$ref` points at, following references to references."""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return resolve(document, node["$ref"]) if isinstance(node, dict) and "$ref" in node else node


def test_the_default_document_passes_the_official_parser(asyncapi_parser: Parse) -> None:
    result = asyncapi_parser(document_of(DEFAULT_PIPELINES))
    assert result.returncode == 0, result.diagnostics


def test_the_parser_check_catches_a_broken_document(asyncapi_parser: Parse) -> None:
    document = document_of(DEFAULT_PIPELINES)
    del document["components"]["messages"]["user.created"]
    document["channels"]["user.updated"]["bindings"]["amqp"]["exchange"]["type"] = "round-robin"
    result = asyncapi_parser(document)
    assert result.returncode == 1
    assert "/components/messages/user.created" in result.diagnostics
    assert "channels/user.updated/bindings/amqp" in result.diagnostics


def test_a_plugins_events_and_models_pass_the_official_parser(asyncapi_parser: Parse, audit_pipelines: Path) -> None:
    result = asyncapi_parser(document_of(audit_pipelines, audit_plugin))
    assert result.returncode == 0, result.diagnostics


def test_each_routing_key_is_a_channel_on_the_configured_topic_exchange() -> None:
    document = document_of(DEFAULT_PIPELINES, exchange="team-events")
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["rabbitmq"]["protocol"] == "amqp"
    for key in USER_KEYS:
        channel = document["channels"][key]
        assert channel["address"] == key
        assert channel["bindings"]["amqp"] == {
            "is": "routingKey",
            "exchange": {"name": "team-events", "type": "topic", "durable": True, "autoDelete": False},
            "bindingVersion": "0.3.0",
        }
        assert resolve(document, channel["messages"][key]["$ref"])["name"] == key


def test_each_message_is_the_event_envelope_with_the_rest_apis_user_model() -> None:
    document = document_of(DEFAULT_PIPELINES)
    messages = document["components"]["messages"]
    for key in USER_KEYS:
        payload = messages[key]["payload"]
        assert set(payload["required"]) == set(payload["properties"]) == BODY_KEYS
        assert payload["additionalProperties"] is False
        assert payload["properties"]["type"]["const"] == key
        assert messages[key]["contentType"] == "application/json"
    # user.password_reset answers 204, but its step says what it saved: the user, as published.
    for key in ("user.created", "user.updated", "user.verified", "user.password_reset"):
        assert messages[key]["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/User"}, key
    user = document["components"]["schemas"]["User"]
    assert user == to_json_schema(schema_of(User))
    assert set(user["properties"]) == PUBLIC_FIELDS
    assert user["properties"]["full_name"]["type"] == ["string", "null"]
    # A deletion answers 204: its data is the route's parameters, the user's id.
    deleted = messages["user.deleted"]["payload"]["properties"]["data"]
    assert deleted["required"] == ["id"]
    assert deleted["properties"]["id"]["type"] == "integer"


def test_headers_and_amqp_properties_are_those_every_event_carries() -> None:
    document = document_of(DEFAULT_PIPELINES)
    message = document["components"]["messages"]["user.created"]
    headers = resolve(document, message["headers"]["$ref"])
    assert headers["required"] == ["x-request-id"]
    assert "tracing is on" in headers["properties"]["traceparent"]["description"]
    assert message["correlationId"]["location"] == "$message.header#/x-request-id"
    amqp = message["bindings"]["amqp"]
    assert amqp["messageType"] == "user.created"
    assert amqp["x-properties"]["message_id"] == "the event's id"
    assert amqp["x-properties"]["content_type"] == "application/json"
    assert amqp["x-properties"]["delivery_mode"] == 2
    assert amqp["x-properties"]["app_id"] == "turnstile"
    send = document["operations"]["send.user.created"]
    assert send["bindings"]["amqp"] == {"deliveryMode": 2, "mandatory": True, "timestamp": True,
                                        "bindingVersion": "0.3.0"}


def test_send_for_each_published_key_and_receive_for_each_subscription() -> None:
    document = document_of(DEFAULT_PIPELINES)
    operations = document["operations"]
    assert set(operations) == {
        "send.user.created", "send.user.deleted", "send.user.updated", "send.user.verified",
        "send.user.password_reset", "receive.user_changes", "receive.user_changes_each_instance",
    }
    created = operations["send.user.created"]
    assert created["action"] == "send"
    assert "`POST /api/v1/auth/register` (register)" in created["description"]
    assert "`POST /api/v1/users` (create_user)" in created["description"]
    receive = operations["receive.user_changes"]
    assert receive["action"] == "receive"
    queue = resolve(document, receive["channel"]["$ref"])
    assert queue["address"] == "turnstile.user-changes"
    assert queue["bindings"]["amqp"]["queue"]["name"] == "turnstile.user-changes"
    assert queue["bindings"]["amqp"]["queue"]["durable"] is True
    assert [resolve(document, m["$ref"])["name"] for m in receive["messages"]] == ["user.deleted", "user.updated"]
    # Each process's own queue: a name it completes, exclusive to its connection (topology.py).
    own = resolve(document, operations["receive.user_changes_each_instance"]["channel"]["$ref"])
    assert own["address"] == "turnstile.user-changes.instance.{instance}"
    assert set(own["parameters"]) == {"instance"}
    assert own["bindings"]["amqp"]["queue"] == {
        "name": "turnstile.user-changes.instance.{instance}", "durable": False, "exclusive": True, "autoDelete": True,
    }


def test_a_plugins_step_type_and_model_appear_without_core_changes(audit_pipelines: Path, unique: str) -> None:
    document = document_of(audit_pipelines, audit_plugin)
    assert document["channels"]["audit.recorded"]["address"] == "audit.recorded"
    send = document["operations"]["send.audit.recorded"]
    assert "`POST /api/v1/audit` (record_audit): the validated body, as it came" in send["description"]
    data = document["components"]["messages"]["audit.recorded"]["payload"]["properties"]["data"]
    assert data == {"$ref": "#/components/schemas/AuditRecord"}
    record = document["components"]["schemas"]["AuditRecord"]
    assert record["properties"]["subject"]["type"] == ["string", "null"]
    assert record["properties"]["action"]["examples"] == ["export"]
    # Only the models an event carries are in the document, not every request body.
    assert set(document["components"]["schemas"]) == {"AuditRecord", "EventHeaders", "User"}
    # `audit.#` and `user.deleted` name documented keys; `billing.*` none, so "any event".
    receive = document["operations"]["receive.audit_trail"]
    names = [resolve(document, m["$ref"])["name"] for m in receive["messages"]]
    assert names == ["audit.recorded", "user.deleted", "any-event"]
    assert resolve(document, receive["channel"]["$ref"])["address"] == audit_queue(unique)


@attrs.frozen(kw_only=True)
class _NoConfig:
    """`{ use = "ghost-emit" }`"""


class _GhostPlugin:
    """Documents an event whose data names a model nobody registered."""

    @hookimpl
    def register_steps(self) -> list[StepType[Any]]:
        def document_events(config: _NoConfig, doc: EventsDoc) -> None:
            doc.publishes("ghost.seen", data="Ghost")

        return [StepType(name="ghost-emit", config_cls=_NoConfig, kind=StepKind.WRAPPER,
                         build=lambda config, ctx: None, document_events=document_events)]  # type: ignore[arg-type,return-value]


def test_event_data_naming_an_unregistered_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text(DEFAULT_PIPELINES.read_text().replace(
        '{ use = "event-emit", event = "user.deleted" },', '{ use = "event-emit", event = "user.deleted" },\n'
        '  { use = "ghost-emit" },'))
    with pytest.raises(PipelineFileError) as caught:
        document_of(path, _GhostPlugin())
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "ghost-emit" in text)
    assert [str(error) for error in caught.value.errors] == [
        f"{path}:{line}: pipeline 'delete_user': the data of event 'ghost.seen' refers to "
        "'#/components/schemas/Ghost', which names no registered model",
    ]


def test_openapi_nullable_and_example_become_json_schema() -> None:
    assert to_json_schema({"type": "string", "nullable": True, "example": "a"}) == {
        "type": ["string", "null"], "examples": ["a"],
    }
    assert to_json_schema({"enum": ["a", "b"], "nullable": True}) == {"enum": ["a", "b", None]}
    assert to_json_schema({"$ref": "#/components/schemas/X", "nullable": True}) == {
        "anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}],
    }
    assert to_json_schema({"type": "object", "nullable": False, "properties": {
        "tags": {"type": "array", "items": {"type": "string", "nullable": True}},
    }}) == {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": ["string", "null"]}}}}


@pytest.mark.parametrize(("binding", "key", "matches"), [
    ("user.created", "user.created", True),
    ("user.*", "user.created", True),
    ("user.*", "user.created.twice", False),
    ("*.deleted", "user.deleted", True),
    ("user.#", "user", True),
    ("user.#", "user.a.b", True),
    ("a.#.z", "a.z", True),
    ("#", "anything.at.all", True),
    ("billing.*", "user.created", False),
])
def test_bindings_receive_keys_as_a_topic_exchange_routes_them(binding: str, key: str, matches: bool) -> None:
    assert topic_matches(binding, key) is matches
