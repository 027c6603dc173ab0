"""What a step is, what a step type declares, what a validated pipeline is, and what a step
may say about itself in the docs.

Plugin authors build against these names (re-exported from `app`). This module imports
nothing of the core but two leaves (the problem media type and the event model), so the
names plugins build against never pull in the loader (app/pipeline/config.py), the engine
or the clients.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

import attrs
from aiohttp import web

from app.errors import PROBLEM_CONTENT_TYPE
from app.models.events import Event

ROUTE_PARAM = re.compile(r"\{([^{}]*)\}")
# The data service's name among the upstreams a step may call: configured from the environment
# (DATA_SERVICE_URL), never by an `[upstreams.NAME]` table.
DATA_SERVICE: Final = "data_service"

@attrs.frozen
class Actor:
    """The authenticated caller, set by the auth step."""

    user_id: int
    roles: tuple[str, ...]
    token_id: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Step(Protocol):
    """A built step: the aiohttp middleware signature, so it acts before and after the rest.

    Call `await handler(request)` to run the rest of the chain, or return a response to
    answer at once.
    """

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse: ...


class StepKind(enum.Enum):
    """Where a step may stand in a pipeline.

    GUARD steps (auth, rate-limit) run before the request body is validated and before
    the `check_request` hooks, so an anonymous caller learns nothing from a 422.
    WRAPPER steps act around the rest of the chain. A TERMINAL step answers and is last.
    """

    GUARD = "guard"
    WRAPPER = "wrapper"
    TERMINAL = "terminal"


MessageHandler = Callable[["Event"], Awaitable[None]]


class MessageStep(Protocol):
    """A built step of a subscription: it gets a consumed event instead of a request.

    Call `await handler(event)` to run the rest; raise to make the message fail (it is
    retried a bounded number of times, then dead-lettered).
    """

    async def __call__(self, event: Event, handler: MessageHandler) -> None: ...


ConfigT = TypeVar("ConfigT")


@attrs.frozen
class BuildContext:
    """What `StepType.build` may use: the app (clients, settings) and the pipeline being built."""

    app: web.Application
    pipeline: PipelineConfig


@attrs.frozen
class CheckContext:
    """What `StepType.check` may look at: the route's parameters and the registered models."""

    route_params: frozenset[str]
    models: frozenset[str]
    # The HTTP services a step may call by name: DATA_SERVICE and each `[upstreams.NAME]`.
    upstreams: frozenset[str] = frozenset({DATA_SERVICE})
    # The registered models themselves, by name (see `model_fields`).
    model_classes: Mapping[str, type[Any]] = attrs.field(factory=dict)

    def model_fields(self, name: str) -> frozenset[str]:
        """The field names of the registered model `name` (none for an unknown or non-attrs one)."""
        model = self.model_classes.get(name)
        return frozenset(field.name for field in attrs.fields(model)) if model is not None and attrs.has(model) \
            else frozenset()


@attrs.frozen
class SubscriptionContext:
    """What `StepType.build_for_message` may use: the app and the subscription's name."""

    app: web.Application
    subscription: str


@attrs.frozen(kw_only=True)
class StepType(Generic[ConfigT]):
    """A step type a plugin adds through the `register_steps` hook.

    name: what `use = "..."` names in pipelines.toml (hyphenated, e.g. "data-fetch").
    config_cls: attrs class the step's settings are structured into (unknown keys refused).
      Fields whose metadata has ``template=True`` (see `template_field`) are checked at load
      time: each ``{placeholder}`` must name a route parameter.
    build: turns a validated config into the callable step, once, at start-up.
    kind: where the step may stand (see StepKind).
    kind_of: when where a step stands depends on its settings, says so per config (e.g. a
      rate limit keyed on the validated body is a WRAPPER after the rules gate, one keyed
      on the client a GUARD before it); `kind` otherwise.
    document: adds what the step means to the route's OpenAPI operation (responses,
      security, headers).
    document_events: says which events the step publishes and what their ``data`` holds
      (`EventsDoc.publishes`), for the AsyncAPI document of the events.
    build_for_message: when set, the step may also stand in a subscription; its templates
      then name fields of the event's ``data`` instead of route parameters.
    check: cross-field rules over the config and its pipeline (Kong's custom_validator),
      run by `turnstile check` and at start-up; each problem it returns is reported at the
      step's line.
    observes_only: a WRAPPER that never answers in the rest's place nor shows what it holds
      (an audit line, a timer) may stand before the guards, and then sees every request,
      anonymous ones included. Any other wrapper before a guard is an error: it would act
      for callers the guard has not checked (a cache before auth answered anyone from it).
    """

    name: str
    config_cls: type[ConfigT]
    build: Callable[[ConfigT, BuildContext], Step]
    kind: StepKind = StepKind.WRAPPER
    kind_of: Callable[[ConfigT], StepKind] | None = None
    document: Callable[[ConfigT, OperationDoc], None] | None = None
    build_for_message: Callable[[ConfigT, SubscriptionContext], MessageStep] | None = None
    check: Callable[[ConfigT, CheckContext], Iterable[str]] | None = None
    document_events: Callable[[ConfigT, EventsDoc], None] | None = None
    observes_only: bool = False

    def kind_for(self, config: ConfigT) -> StepKind:
        """Where a step of this type with `config` stands."""
        return self.kind if self.kind_of is None else self.kind_of(config)


RESERVED_PLACEHOLDERS = frozenset({"actor"})


def template_field(**kwargs: Any) -> Any:
    """An attrs field holding a ``{placeholder}`` template over the route parameters.

    Besides route parameters a template may name ``{actor}``: the authenticated user's id.
    """
    metadata = dict(kwargs.pop("metadata", {}))
    metadata["template"] = True
    return attrs.field(metadata=metadata, **kwargs)


# --- the validated result -------------------------------------------------------------------
# An ``{name:int}`` route parameter (contract §4): a decimal int64 written one way only, in
# ASCII digits without leading zeros, so two spellings never name one record (and never two
# cache keys). The router matches the form (``\d`` would match any Unicode digit); the range,
# which a regex says badly, is `int_param_in_range`'s job before any step runs.
INT_PARAM_PATTERN: Final = "0|[1-9][0-9]{0,18}"
INT_PARAM_MAX: Final = 2**63 - 1
_INT_PARAM_MAX_TEXT: Final = str(INT_PARAM_MAX)


def int_param_in_range(value: str) -> bool:
    """`value` (matched by INT_PARAM_PATTERN) is at most INT_PARAM_MAX.

    Only a 19-digit value can exceed it, and digit strings of one length compare as numbers.
    """
    return len(value) < len(_INT_PARAM_MAX_TEXT) or value <= _INT_PARAM_MAX_TEXT


@attrs.frozen
class Route:
    """``METHOD /path/{param}``; a param written ``{id:int}`` matches a canonical int64 only."""

    method: str
    path: str
    params: tuple[str, ...]
    int_params: frozenset[str] = frozenset()

    @property
    def router_path(self) -> str:
        """The path in aiohttp's syntax (typed params as regex)."""
        return ROUTE_PARAM.sub(
            lambda m: "{%s:%s}" % (m.group(1).split(":")[0], INT_PARAM_PATTERN)  # noqa: UP031
            if m.group(1).endswith(":int")
            else "{%s}" % m.group(1).split(":")[0],  # noqa: UP031
            self.path,
        )

    @property
    def plain_path(self) -> str:
        """The path with bare ``{param}`` placeholders (OpenAPI's syntax)."""
        return ROUTE_PARAM.sub(lambda m: "{%s}" % m.group(1).split(":")[0], self.path)  # noqa: UP031

    def __str__(self) -> str:
        return f"{self.method} {self.plain_path}"


@attrs.frozen
class ConfiguredStep:
    """One step of a pipeline: its type, its validated config, where it was written, and the
    plugin that added its type (for the messages that name who to ask)."""

    type: StepType[Any]
    config: Any
    line: int
    plugin: str = ""

    @property
    def kind(self) -> StepKind:
        return self.type.kind_for(self.config)


@attrs.frozen(kw_only=True)
class PipelineConfig:
    """One validated `[[pipelines]]` table: a route, its optional body and query models, its
    steps (outermost first) and the file line it starts at."""

    name: str
    route: Route
    steps: tuple[ConfiguredStep, ...]
    body: str | None = None
    query: str | None = None
    summary: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    line: int = 0


@attrs.frozen(kw_only=True)
class SubscriptionConfig:
    """One validated `[[subscriptions]]` table: a queue bound to routing keys, and its steps.

    delivery: ``shared`` (one durable queue for the deployment: each event handled once) or
    ``each-instance`` (a queue per process: every instance hears every event). max_wait_s: how
    long a message whose steps fail because a dependency is down waits for it.
    """

    name: str
    queue: str
    bindings: tuple[str, ...]
    steps: tuple[ConfiguredStep, ...]
    delivery: Literal["shared", "each-instance"] = "shared"
    prefetch: int = 16
    max_retries: int = 3
    retry_delay_s: float = 1.0
    max_wait_s: float = 600.0
    line: int = 0


@attrs.frozen(kw_only=True)
class UpstreamConfig:
    """One validated `[upstreams.NAME]` table: an HTTP service besides the data service, with
    its `${VAR}`s already taken from the environment (so `token` stays out of `repr`)."""

    name: str
    url: str
    token: str | None = attrs.field(default=None, repr=False)
    connect_timeout_s: float = 1.0
    timeout_s: float = 5.0
    retries: int = 2
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0
    pool_limit: int = 100
    line: int = 0


@attrs.frozen
class PipelineFile:
    """A validated pipelines file: its pipelines, subscriptions and upstreams, in file order;
    `sha256` is the hex digest of the bytes it was read from."""

    path: Path
    pipelines: tuple[PipelineConfig, ...]
    subscriptions: tuple[SubscriptionConfig, ...] = ()
    upstreams: tuple[UpstreamConfig, ...] = ()
    sha256: str = ""


# --- documentation ---------------------------------------------------------------------------
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
BEARER_SCHEME = "bearerAuth"
OAUTH2_SCHEME = "oauth2Password"
# An ``{name:int}`` path parameter: any other spelling matches no route (a 404).
_INT64 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": INT_PARAM_MAX}
# What the headers a route may send always hold, for generated clients' types.
HEADER_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "Retry-After": {"type": "integer", "minimum": 0},  # seconds, never an HTTP date here
    "X-Cache": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
}


def model_ref(name: str) -> dict[str, str]:
    """A JSON reference to the registered model `name` in the OpenAPI document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


@attrs.define
class OperationDoc:
    """The OpenAPI operation of one pipeline route, which each step's `document` callback adds to:
    responses (`respond`, `problem`), headers, security, query parameters and notes."""

    pipeline: PipelineConfig
    responses: dict[str, dict[str, Any]] = attrs.Factory(dict)
    security: list[dict[str, list[str]]] | None = None
    parameters: list[dict[str, Any]] = attrs.Factory(list)
    # Sentences steps add to the operation's description (e.g. the event it publishes).
    pipeline_notes: list[str] = attrs.Factory(list)
    # What a step that saves a change without answering it in a body puts under `payload_key`
    # (`saves`), for the steps that announce the change to document (EventsDoc.payload_schema).
    saved: dict[str, Any] | None = None

    def saves(self, schema: dict[str, Any] | str) -> None:
        """The change this route saves is `schema` (a schema, or a registered model's name),
        though its answer has no body: what an `event-emit` step around it publishes as data."""
        self.saved = model_ref(schema) if isinstance(schema, str) else schema

    def respond(
        self, status: int, description: str, *, schema: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """A success response (JSON when `schema` is given)."""
        response: dict[str, Any] = self.responses.setdefault(str(status), {"description": description})
        if schema is not None:
            response["content"] = {"application/json": {"schema": schema}}
        for name, text in (headers or {}).items():
            self.header(status, name, text)

    def problem(self, status: int, description: str, *, headers: dict[str, str] | None = None) -> None:
        """An error response in problem+json."""
        response = self.responses.setdefault(
            str(status), {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}}
        )
        if description not in response["description"]:
            response["description"] += f"; {description}"
        for name, text in (headers or {}).items():
            self.header(status, name, text)

    def header(self, status: int, name: str, description: str, *, schema: dict[str, Any] | None = None) -> None:
        """A header of the `status` answer; its schema is a string unless `schema` (or, for the
        headers every route may send, `HEADER_SCHEMAS`) says more."""
        response = self.responses.setdefault(str(status), {"description": description})
        schema = schema if schema is not None else HEADER_SCHEMAS.get(name, {"type": "string"})
        response.setdefault("headers", {})[name] = {"description": description, "schema": schema}

    def require_bearer(self) -> None:
        self.security = [{BEARER_SCHEME: []}, {OAUTH2_SCHEME: []}]

    def query_parameter(self, name: str, schema: dict[str, Any], description: str, *, required: bool) -> None:
        self.parameters.append(
            {"name": name, "in": "query", "required": required, "description": description, "schema": schema}
        )

    def to_dict(self) -> dict[str, Any]:
        pipeline = self.pipeline
        route = pipeline.route
        operation: dict[str, Any] = {
            "operationId": pipeline.name,
            "summary": pipeline.summary or pipeline.name.replace("_", " "),
            "tags": list(pipeline.tags) or ["default"],
            "parameters": [
                {
                    "name": param, "in": "path", "required": True,
                    "schema": _INT64 if param in route.int_params else {"type": "string"},
                }
                for param in route.params
            ] + self.parameters,
            "responses": dict(sorted(self.responses.items())),
        }
        description = " ".join(filter(None, [pipeline.description, *self.pipeline_notes]))
        if description:
            operation["description"] = description
        if self.security is not None:
            operation["security"] = self.security
        if not operation["parameters"]:
            del operation["parameters"]
        return operation


# --- documentation of events -----------------------------------------------------------------
@attrs.frozen
class PublishedEvent:
    """One event type a pipeline publishes: its routing key, its ``data`` schema, a note."""

    type: str
    data: dict[str, Any]
    description: str | None = None


@attrs.define
class EventsDoc:
    """Filled by the `document_events` callbacks of one pipeline's steps.

    pipeline: the pipeline being documented.
    operation: its OpenAPI operation as its steps documented it, so a step can say its
      event carries what the route answers (`response_schema`).
    """

    pipeline: PipelineConfig
    operation: OperationDoc
    published: list[PublishedEvent] = attrs.Factory(list)

    def publishes(self, event_type: str, *, data: dict[str, Any] | str, description: str | None = None) -> None:
        """The pipeline publishes `event_type` (its routing key); `data` is the schema of the
        event's data, or the name of a registered model; `description` says when or what."""
        schema = model_ref(data) if isinstance(data, str) else data
        self.published.append(PublishedEvent(event_type, schema, description))

    def response_schema(self) -> dict[str, Any] | None:
        """The schema of the route's success answer (its first 2xx with a JSON body), if any."""
        for status, response in sorted(self.operation.responses.items()):
            if not status.startswith("2"):
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                return dict(schema)
        return None

    def payload_schema(self) -> dict[str, Any] | None:
        """The schema of what the route's steps saved and answered: its JSON answer, or what a
        step that answers without a body said it saved (`OperationDoc.saves`); None when neither."""
        answered = self.response_schema()
        return answered if answered is not None else self.operation.saved

    def route_params_schema(self) -> dict[str, Any]:
        """An object of the route's parameters, e.g. ``{"id": 7}`` for ``/users/{id:int}``."""
        route = self.pipeline.route
        properties = {
            name: {"type": "integer", "format": "int64"} if name in route.int_params else {"type": "string"}
            for name in route.params
        }
        schema: dict[str, Any] = {"type": "object", "description": "The route's parameters.", "properties": properties}
        if route.params:
            schema["required"] = list(route.params)
        return schema
