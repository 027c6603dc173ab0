"""What a step is, what a step type declares, and what a step may say about itself in the docs.

Plugin authors build against these names (re-exported from `app`).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs
from aiohttp import web

if TYPE_CHECKING:
    from app.models.events import Event
    from app.pipeline.config import PipelineConfig
    from app.pipeline.docs import OperationDoc
    from app.pipeline.event_docs import EventsDoc

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
