"""What the installed plugins add: step types and models, gathered once from the hooks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import attrs
import pluggy

from app.asyncapi.document import published_events
from app.asyncapi.subscription_fields import subscription_placeholder_errors
from app.models.extend import ModelExtensionError, extend_model, retarget_model
from app.pipeline.config import ConfigError, PipelineFileError, load_pipelines
from app.pipeline.types import PipelineConfig, PipelineFile, StepType
from app.plugin_loading import PluginLoadError, call_at_load
from app.plugins import disabled_origins, has_implementations
from app.reserved_routes import ReservedRoute, reserved_routes


@attrs.frozen
class Registry:
    steps: dict[str, StepType[Any]]
    models: dict[str, type[Any]]
    # which plugin added each step type and model, for `turnstile plugins`
    origins: dict[str, str]
    # what a disabled plugin would add, keyed as `origins`, and its name (the file's errors say so)
    disabled: dict[str, str] = attrs.field(factory=dict)


class RegistryError(Exception):
    """Two plugins added the same step type or model name, or a model extension does not apply."""


def make_registry(pm: pluggy.PluginManager) -> Registry:
    steps: dict[str, StepType[Any]] = {}
    models: dict[str, type[Any]] = {}
    origins: dict[str, str] = {}
    problems = []
    for impl in pm.hook.register_steps.get_hookimpls():
        step_types: list[StepType[Any]] = cast("list[StepType[Any]]", call_at_load(impl)) or []
        for step_type in step_types:
            if step_type.name in steps:
                problems.append(f"step type {step_type.name!r} is added by both "
                                f"{origins[step_type.name]} and {impl.plugin_name}")
            steps[step_type.name] = step_type
            origins[step_type.name] = impl.plugin_name
    for impl in pm.hook.register_models.get_hookimpls():
        new_models = cast("list[type[Any]]", call_at_load(impl)) or []
        for model in new_models:
            name = model.__name__
            if name in models and models[name] is not model:
                problems.append(f"model {name!r} is added by both {origins['model:' + name]} and {impl.plugin_name}")
            models[name] = model
            origins["model:" + name] = impl.plugin_name
    problems.extend(_extend_models(pm, models, origins))
    problems.extend(_body_bounds(models, origins))
    if problems:
        raise RegistryError("; ".join(problems))
    return Registry(steps, models, origins, disabled_origins(pm))


def _extend_models(pm: pluggy.PluginManager, models: dict[str, type[Any]], origins: dict[str, str]) -> list[str]:
    """Apply every `extend_models` implementation to `models` in place; the problems found."""
    problems = []
    originals = dict(models)
    for impl in pm.hook.extend_models.get_hookimpls():
        extensions = cast("dict[str, type[Any]]", call_at_load(impl)) or {}
        for name, extension in extensions.items():
            if name not in models:
                problems.append(f"{impl.plugin_name} extends model {name!r}, which no plugin registered")
                continue
            try:
                models[name] = extend_model(models[name], extension)
            except ModelExtensionError as exc:
                problems.append(f"{impl.plugin_name}: {exc}")
                continue
            origins["model:" + name] += f" (extended by {impl.plugin_name})"
    # The models that hold an extended one (a page of users) are made again over it, and those
    # that hold them in turn, until nothing changes.
    replaced = {originals[name]: models[name] for name in models if models[name] is not originals[name]}
    for _depth in range(len(models)):  # (a model holding itself would be made again for ever)
        if not replaced:
            break
        remade = {}
        for name, model in models.items():
            retargeted = retarget_model(model, replaced)
            if retargeted is not model:
                remade[model] = retargeted
                models[name] = retargeted
        replaced = remade
    return problems


def _body_bounds(models: dict[str, type[Any]], origins: dict[str, str]) -> list[str]:
    """The problems with the `max_json_containers` a model may declare (app/pipeline/json_checks.py):
    found at start-up and by `turnstile check`, not as a 500 on the first request."""
    problems = []
    for name, model in models.items():
        bound = getattr(model, "max_json_containers", 1)
        if type(bound) is not int or bound < 1:
            problems.append(f"model {name!r} of {origins['model:' + name]}: max_json_containers must be "
                            f"a positive integer, not {bound!r}")
    return problems


def load_checked(
    path: Path, pm: pluggy.PluginManager, environ: Mapping[str, str] | None = None
) -> tuple[Registry, PipelineFile]:
    """The one function `turnstile check`, server start-up and a reload share.

    `environ` is where upstream tables' ``${VAR}``s come from (default: ``os.environ``).

    Raises:
        PipelineFileError: every problem in the file (or a plugin clash), as FILE:LINE lines.
    """
    try:
        registry = make_registry(pm)
        reserved = _reserved(pm)
    except (RegistryError, PluginLoadError) as exc:
        raise PipelineFileError([ConfigError(str(path), 0, str(exc))]) from exc
    def clashes(pipeline: PipelineConfig) -> list[str]:
        return [
            f"pipeline {pipeline.name!r}: {pipeline.route} is taken by {route.owner} ({route.method} "
            f"{route.path}{'…' if route.prefix else ''}), which the router tries first: the pipeline would never run"
            for route in reserved
            if route.takes(pipeline)
        ]

    file = load_pipelines(path, registry.steps, registry.models, environ=environ, origins=registry.origins,
                          pipeline_check=clashes, disabled=registry.disabled)
    if file.subscriptions:
        # The events' data is known from the pipelines that publish them, as the AsyncAPI document
        # has it, unless a plugin's enrich_event may add any field.
        errors = subscription_placeholder_errors(file, published_events(file), registry.models,
                                                 data_may_grow=has_implementations(pm.hook.enrich_event))
        if errors:
            raise PipelineFileError(errors)
    return registry, file


def _reserved(pm: pluggy.PluginManager) -> tuple[ReservedRoute, ...]:
    """The routes pipelines may not take; RegistryError when two of them are one route."""
    reserved = reserved_routes(pm)
    seen: dict[tuple[str, str], ReservedRoute] = {}
    problems = []
    for route in reserved:
        first = seen.setdefault((route.method, route.path), route)
        if first is not route:
            problems.append(f"{route.method} {route.path} is served by both {first.owner} and {route.owner}")
    if problems:
        raise RegistryError("; ".join(problems))
    return reserved
