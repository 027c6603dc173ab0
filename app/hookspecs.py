"""Every hook a Turnstile plugin may implement, with when it runs and what it may return.

pluggy is synchronous. Hooks marked *may be async* are called one implementation at a time,
each awaited (when it returned an awaitable) before the next is called, in Turnstile's order:
the order plugins were loaded, the built-ins first (`app.plugins.implementations`; pluggy's own
is the reverse). Such hooks never use ``firstresult``. A hook that raises a
`ProblemError` answers the request with that problem; any other exception becomes a 500
for that request (logged with its request id), never a hang.

Implement with ``from app import hookimpl``::

    @hookimpl
    def check_request(request, pipeline, actor, body):
        ...
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from app.commands import Command
    from app.pipeline.types import Actor, PipelineConfig, PipelineFile, StepType
    from app.plugin_routes import PluginRoute
    from app.resources import Resources

PROJECT_NAME = "turnstile"
# The hooks called once, while the app is put together, where nothing awaits: an `async def`
# implementation of one of them is refused at load (app/plugins.py).
LOAD_TIME_HOOKS = (
    "register_steps", "register_models", "extend_models", "register_settings", "register_hookspecs",
    "register_commands", "register_routes", "register_mirrored_keys", "setup_app",
)

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- registration (start-up, before pipelines.toml is checked) ----------------------------------
@hookspec
def register_steps() -> list[StepType[Any]]:
    """Return the step types this plugin adds, each named for ``use = "..."``.

    Runs once when pipelines are loaded (server start-up and ``turnstile check``).
    Must be synchronous. All implementations run; two plugins adding the same name is an
    error reported at load time.
    """


@hookspec
def register_models() -> list[type[Any]]:
    """Return the attrs classes this plugin adds as request-body or response models.

    A pipeline names one with ``body = "ClassName"``; the OpenAPI document shows them all.
    Runs once at load time. Must be synchronous. All implementations run; a name given
    twice is an error.
    """


@hookspec
def extend_models() -> dict[str, type[Any]]:
    """Return fields to add to models other plugins registered: model name → an attrs class
    whose fields (declared with `schema_field`) are added to that model.

    The extended model is the one everything uses: the OpenAPI (and AsyncAPI) documents,
    request-body validation, the check of upstream answers and of every answer before it
    leaves (so the fields are kept there, in the cache and in events). A field the data
    service does not supply needs a default and is filled by a `transform_response`
    implementation. Runs once at load time, after `register_models`. Must be synchronous.
    All implementations run; two plugins adding one field name, or a field the model has,
    is an error, as is naming a model nobody registered.
    """


@hookspec
def register_settings() -> list[type[Any]]:
    """Return the attrs classes of this plugin's settings: environment variables under the
    plugin's own prefix (each field made with `setting`, the class's ``env_prefix`` before
    the field's name; see app/plugin_settings.py).

    Runs once at start-up (and for every CLI command), before the app is built; the values
    are read with the core's settings and every bad variable is one line of one report.
    Read them with ``plugin_settings(app, TheClass)``. Must be synchronous. All
    implementations run; two plugins claiming one variable is a problem of the report.
    """


@hookspec
def register_hookspecs() -> list[object]:
    """Return modules or classes holding ``@hookspec`` functions: hooks this plugin offers
    other plugins (like pytest's ``pytest_addhooks``).

    Runs once when the plugin manager is made, after every plugin is registered, so an
    implementation is checked against its spec whatever the load order. Must be
    synchronous. All implementations run. The offering plugin calls its hooks through the
    app's plugin manager (``app[plugin_manager_key].hook.<name>``), with `call_all` or
    `call_chain` for may-be-async ones.
    """


@hookspec
def register_commands() -> list[Command]:
    """Return `Command`s: ``turnstile`` subcommands this plugin adds (e.g. the users
    plugin's ``create-admin``).

    Runs once per CLI invocation, before the arguments are parsed. Must be synchronous. All
    implementations run; a name already taken (by the core or another plugin) is an error.
    """


@hookspec
def register_routes() -> list[PluginRoute]:
    """Return `PluginRoute`s: step-free routes this plugin serves beside the pipelines (a
    fixed document at a well-known path, say), each listed in the OpenAPI document among
    the operational routes.

    Runs once per app, when its routes are added (and once for ``turnstile openapi``); the
    handlers find what they need in ``request.app``. Must be synchronous. All
    implementations run; a name, or a method and path, already taken stops the start-up.
    """


# --- building the app (start-up, before it freezes) --------------------------------------------
@hookspec
def register_mirrored_keys(app: web.Application, pipelines: PipelineFile) -> list[str]:
    """Return Redis key prefixes this plugin reads on (nearly) every request, to be kept in
    process memory while Redis's invalidation pushes flow (``REDIS_CLIENT_TRACKING``).

    Runs once per app, before the clients are made: ``app`` holds the settings (core and
    plugins') but no client yet. ``pipelines`` is the loaded pipelines file (empty for a
    CLI command). Must be synchronous. All implementations run; every prefix returned is
    mirrored. Name only keys that are read far more than written.
    """


@hookspec
def setup_app(app: web.Application, resources: Resources) -> None:
    """Add what this plugin holds for the app's lifetime: objects put in the app under
    `AppKey`s, resources opened at start-up and closed at shutdown, readiness checks and
    metrics, all through ``resources`` (so `turnstile plugins`, ``/readyz`` and
    ``/metrics`` show them).

    Runs once per app, after the core's clients are made and before the pipelines' steps
    are built (so a step's ``build`` finds what was put in the app), before the app
    freezes. No I/O here: open things in a cleanup context (`Resources.add`). Return value
    ignored. Must be synchronous. All implementations run, in load order.
    """


# --- lifecycle ----------------------------------------------------------------------------------
@hookspec
def startup(app: web.Application) -> Awaitable[None] | None:
    """Run once the app's clients are started and every plugin's resources are open, before
    the service reports ready.

    Return value ignored. May be ``async def``. All implementations run; one that raises
    stops the start-up.
    """


@hookspec
def shutdown(app: web.Application) -> Awaitable[None] | None:
    """Run once on shutdown, after the last request drained, before plugins' resources and
    the clients close.

    Return value ignored. May be ``async def``. All implementations run; one that raises is
    logged and the others still run.
    """


# --- requests -----------------------------------------------------------------------------------
@hookspec
def transform_request(
    request: web.Request, pipeline: PipelineConfig, body: dict[str, Any]
) -> Awaitable[dict[str, Any] | None] | dict[str, Any] | None:
    """Rewrite a request body (a JSON object) before it is validated against its model.

    Runs for pipelines that declare ``body``, after the guard steps (auth, rate-limit).
    Return a new object to replace the body, or None to keep it; each implementation sees
    the previous one's result. May be ``async def``. Example: normalise an email address.
    """


@hookspec
def check_request(
    request: web.Request, pipeline: PipelineConfig, actor: Actor | None, body: dict[str, Any] | None
) -> Awaitable[None] | None:
    """Accept or reject a request: a business rule. Raise a ``ProblemError`` to reject.

    Runs for every pipeline after the guard steps and after the body was validated, before
    any other step (so also before a cache answers). ``actor`` is None for anonymous
    pipelines, ``body`` None when the pipeline declares none. Return value ignored. May be
    ``async def``. All implementations run until one raises.
    """


@hookspec
def transform_upstream(
    request: web.Request, pipeline: PipelineConfig, payload: dict[str, Any]
) -> Awaitable[dict[str, Any] | None] | dict[str, Any] | None:
    """Rewrite the JSON object a data-fetch step is about to send to the data service.

    Runs inside the data-fetch step, just before the upstream call, only when the call
    carries a body. Return a new object to replace it, or None to keep it; each
    implementation sees the previous result. May be ``async def``. Example: hash a password.
    """


@hookspec
def transform_response(
    request: web.Request, pipeline: PipelineConfig, data: Any
) -> Awaitable[Any] | Any:
    """Rewrite the data a data-fetch step got from the data service before it is answered.

    Runs inside the data-fetch step on every successful upstream answer that has a body,
    after the answer was checked against the step's `response` model and before outer steps
    (cache, event-emit) see it. Return the new data, or None to keep it; each implementation
    sees the previous result. May be ``async def``. What the implementations return is
    checked against the model again before it leaves: a field the model does not declare
    (see `extend_models`) is dropped, a wrong type is a 500. Example: fill a field a plugin
    added to the model.
    """


# --- events -------------------------------------------------------------------------------------
@hookspec
def enrich_event(
    request: web.Request | None, pipeline: PipelineConfig | None, event: dict[str, Any]
) -> Awaitable[dict[str, Any] | bool | None] | dict[str, Any] | bool | None:
    """Enrich or suppress a domain event before it is published.

    Runs in the event-emit step after the rest of the chain succeeded. ``event`` is the
    event body (``id``, ``type``, ``occurred_at``, ``request_id``, ``data``). Return a new
    body to replace it, None to keep it, or False to suppress the event. Each
    implementation sees the previous result; after a False no later one runs. May be
    ``async def``. One that raises on the event of a saved change does not lose the event: it
    is published as it was made, and the request answers the hook's error.
    """
