"""create_app(): the application, read as a table of contents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy
from aiohttp import web

from app.asyncapi import build_asyncapi, setup_asyncapi
from app.deadlines import RequestDeadlines, request_deadlines_ctx, request_deadlines_key
from app.expect import expect_handler
from app.head_routes import answer_head_beside_get
from app.health import setup_health_routes
from app.keys import models_key, pipelines_key, plugin_manager_key, readiness_key, settings_key
from app.lifecycle import lifecycle_ctx
from app.loop_watch import LoopWatch, loop_watch_ctx, loop_watch_key
from app.metrics import metrics_handler
from app.middlewares.cors import CorsPolicy
from app.middlewares.errors import error_middleware
from app.middlewares.headers import headers_middleware
from app.middlewares.observe import observe_middleware
from app.middlewares.request_id import request_id_middleware
from app.openapi import build_document, setup_openapi
from app.pipeline.registry import load_checked
from app.pipeline.routes import build_routing_table, setup_pipeline_routes
from app.pipeline.subscriptions import setup_subscriptions
from app.pipeline.types import PipelineFile
from app.plugin_routes import setup_plugin_routes
from app.plugin_settings import PluginSettings, read_plugin_settings, set_plugin_settings
from app.plugins import make_plugin_manager, unknown_plugin_names
from app.protocol_errors import answer_protocol_errors_as_problems
from app.proxies import TrustedProxies, trusted_proxies_key
from app.readiness import Readiness
from app.reload import setup_reload
from app.reserved_routes import METRICS_PATH
from app.resources import setup_plugin_resources
from app.server_header import hide_server_version
from app.settings import Settings, SettingsError, read_settings
from app.tracing import setup_tracing
from app.upstreams import setup_upstreams
from app.wiring import setup_clients

MAX_BODY_BYTES = 1024 * 1024


def make_settings_plugin_manager(settings: Settings) -> pluggy.PluginManager:
    return make_plugin_manager(
        disabled=settings.disabled_plugins, trace=settings.trace_hooks, modules=settings.extra_plugins
    )


def load_configuration(
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, pluggy.PluginManager, PluginSettings]:
    """The core's settings, the plugin manager they name, and every plugin's settings, all
    read from `environ` (default: os.environ) and checked together.

    Raises:
        SettingsError: one line per bad variable, the core's and every plugin's in one report
            (the production requirements of each included).
    """
    settings, pm, values, problems = read_configuration(environ)
    if problems:
        raise SettingsError(problems)
    return settings, pm, values


def read_configuration(
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, pluggy.PluginManager, PluginSettings, list[str]]:
    """`load_configuration`'s parts and its problems (one line per bad variable), for a caller
    that reports the problems later (the CLI: after the arguments, so `--help` always works)."""
    settings, problems = read_settings(environ)
    problems.extend(
        f"TURNSTILE_DISABLE_PLUGINS: {name!r} is not an installed plugin (see `turnstile plugins`)"
        for name in unknown_plugin_names(settings.disabled_plugins, settings.extra_plugins)
    )
    pm = make_settings_plugin_manager(settings)
    values, plugin_problems = read_plugin_settings(pm, settings.environ, production=settings.production)
    return settings, pm, values, problems + plugin_problems


def check_plugin_settings(settings: Settings, pm: pluggy.PluginManager) -> PluginSettings:
    """The plugins' settings from the environment `settings` were read from.

    Raises:
        SettingsError: one line per bad variable.
    """
    values, problems = read_plugin_settings(pm, settings.environ, production=settings.production)
    if problems:
        raise SettingsError(problems)
    return values


def prepare_app(
    settings: Settings,
    pm: pluggy.PluginManager,
    pipelines: PipelineFile | None = None,
    models: dict[str, type[Any]] | None = None,
) -> web.Application:
    """The app before its pipelines are wired in: settings (the core's and the plugins'),
    the core's clients and what every plugin's `setup_app` added. No I/O.

    Raises:
        SettingsError: a plugin's variables are wrong.
    """
    plugin_values = check_plugin_settings(settings, pm)
    hide_server_version()
    answer_protocol_errors_as_problems()
    # CORS only when origins are configured: no per-request cost otherwise. Inside the access
    # log (a preflight is a logged request) and outside the errors (problems get its headers).
    cors = [CorsPolicy(settings.cors_allowed_origins).middleware()] if settings.cors_allowed_origins else []
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        # Bodies are decoded by the reader, within the limit (app/pipeline/content_coding.py):
        # aiohttp's own decoding inflates even the unread rest of a body it drains.
        handler_args={"auto_decompress": False},
        middlewares=[request_id_middleware, observe_middleware, headers_middleware, *cors, error_middleware],
    )
    app[settings_key] = settings
    set_plugin_settings(app, plugin_values)
    app[trusted_proxies_key] = TrustedProxies(settings.trusted_proxies)
    app[plugin_manager_key] = pm
    app[pipelines_key] = pipelines if pipelines is not None else PipelineFile(settings.pipelines_file, ())
    app[models_key] = models if models is not None else {}
    app[readiness_key] = Readiness()
    # First in the cleanup contexts: they run until everything else has stopped.
    app[loop_watch_key] = LoopWatch(settings.loop_blocked_s)
    app.cleanup_ctx.append(loop_watch_ctx)
    app[request_deadlines_key] = RequestDeadlines(settings.request_timeout_s)
    app.cleanup_ctx.append(request_deadlines_ctx)

    mirrored = pm.hook.register_mirrored_keys(app=app, pipelines=app[pipelines_key])
    setup_clients(app, settings, mirrored=[prefix for prefixes in mirrored for prefix in prefixes])
    setup_plugin_resources(app, pm)
    return app


def build_steps(
    settings: Settings, pm: pluggy.PluginManager, pipelines: PipelineFile, models: dict[str, type[Any]]
) -> None:
    """Build every pipeline's steps on an app that is never started, as `create_app` would.

    Raises:
        PipelineFileError: a plugin's `build` failed (FILE:LINE naming the step and the plugin).
        SettingsError: a plugin's variables are wrong.
    """
    app = prepare_app(settings, pm, pipelines, models)
    setup_upstreams(app, pipelines.upstreams)
    build_routing_table(pipelines, app, pm, models)


def create_app(settings: Settings, *, pm: pluggy.PluginManager | None = None) -> web.Application:
    """The whole service, built without I/O; clients start in the app's cleanup contexts.

    Raises:
        PipelineFileError: the pipelines file has errors (each as FILE:LINE: message).
        SettingsError: a plugin's variables are wrong.
    """
    pm = pm if pm is not None else make_settings_plugin_manager(settings)
    registry, pipelines = load_checked(settings.pipelines_file, pm)
    app = prepare_app(settings, pm, pipelines, registry.models)
    setup_upstreams(app, pipelines.upstreams)
    setup_tracing(app)  # before the routes: their step wrappers read what it decided
    setup_pipeline_routes(app, pipelines, pm, registry.models)
    setup_reload(app)
    setup_subscriptions(app)
    setup_health_routes(app)
    app.router.add_get(METRICS_PATH, metrics_handler, name="metrics", expect_handler=expect_handler)
    routes = setup_plugin_routes(app, pm)
    setup_openapi(app, build_document(pipelines, registry.models, routes=routes))
    setup_asyncapi(app, build_asyncapi(pipelines, registry.models, exchange=settings.events_exchange))
    answer_head_beside_get(app.router)
    app.cleanup_ctx.append(lifecycle_ctx)
    return app
