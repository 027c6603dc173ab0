"""pipelines.toml → validated, typed pipelines and subscriptions, with every error located.

Two phases (STYLE B5): tomllib + cattrs give the file's shape (`RawFile`); then each step's
settings are structured into its step type's own config class. Every error is collected
and reported as ``FILE:LINE: message``; `turnstile check` and server start-up share
`load_pipelines`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from app.clients.amqp.topology import DEAD_LETTER_SUFFIX
from app.converter import converter, format_path, iter_errors
from app.pipeline.locate import PositionIndex
from app.pipeline.template import template_placeholders, template_settings
from app.pipeline.types import (
    DATA_SERVICE,
    RESERVED_PLACEHOLDERS,
    ROUTE_PARAM,
    CheckContext,
    ConfiguredStep,
    PipelineConfig,
    PipelineFile,
    Route,
    StepKind,
    StepType,
    SubscriptionConfig,
    UpstreamConfig,
)
from app.pipeline.upstream_tables import RawUpstream, check_upstream

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
T = TypeVar("T")
_ROUTE = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*)$")
_PARAM_SPEC = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)(?::(?P<type>int|str))?$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# --- the file's shape -----------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class RawPipeline:
    name: str
    route: str
    steps: list[dict[str, Any]]
    body: str | None = None
    query: str | None = None
    summary: str | None = None
    description: str | None = None
    tags: list[str] = attrs.Factory(list)


def _check_delivery(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    # cattrs reports a validator's error without the field's path, so the message names it.
    if value not in ("shared", "each-instance"):
        msg = f'delivery: expected "shared" or "each-instance", got {value!r}'
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class RawSubscription:
    name: str
    queue: str
    bindings: list[str]
    steps: list[dict[str, Any]]
    delivery: str = attrs.field(default="shared", validator=_check_delivery)
    prefetch: int = attrs.field(default=16, validator=attrs.validators.gt(0))
    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    retry_delay_s: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    max_wait_s: float = attrs.field(default=600.0, validator=attrs.validators.ge(0))


@attrs.frozen(kw_only=True)
class RawFile:
    """The file's top level; each table is structured on its own, so that one table's errors
    never hide another's (`turnstile check` lists every error of the file in one run)."""

    pipelines: list[dict[str, Any]] = attrs.Factory(list)
    subscriptions: list[dict[str, Any]] = attrs.Factory(list)
    upstreams: dict[str, dict[str, Any]] = attrs.Factory(dict)


@attrs.frozen
class ConfigError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        # Line 0: about the file as a whole, or the plugins it is read with (two add one step type).
        return f"{self.file}: {self.message}" if self.line == 0 else f"{self.file}:{self.line}: {self.message}"


class PipelineFileError(Exception):
    """The pipelines file has errors; `errors` lists every one, in file order."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = sorted(errors, key=lambda e: e.line)
        super().__init__("\n".join(map(str, self.errors)))


# --- loading ---------------------------------------------------------------------------------
def parse_route(text: str) -> Route:
    """Raises ValueError with what is wrong."""
    match = _ROUTE.match(text.strip())
    if match is None:
        msg = f"bad route {text!r}: expected 'METHOD /path' such as 'GET /api/v1/users/{{id}}'"
        raise ValueError(msg)
    method, path = match["method"], match["path"]
    if method not in METHODS:
        msg = f"bad route {text!r}: method must be one of {', '.join(METHODS)}"
        raise ValueError(msg)
    params: list[str] = []
    int_params = set()
    for spec in ROUTE_PARAM.findall(path):
        param = _PARAM_SPEC.match(spec)
        if param is None:
            msg = f"bad route {text!r}: parameter {{{spec}}} must be {{name}} or {{name:int}}"
            raise ValueError(msg)
        if param["name"] in params:
            msg = f"bad route {text!r}: parameter {{{param['name']}}} appears twice"
            raise ValueError(msg)
        params.append(param["name"])
        if param["type"] == "int":
            int_params.add(param["name"])
    if "{" in ROUTE_PARAM.sub("", path) or "}" in ROUTE_PARAM.sub("", path):
        msg = f"bad route {text!r}: unbalanced braces"
        raise ValueError(msg)
    return Route(method, path, tuple(params), frozenset(int_params))


class _Loader:
    def __init__(
        self, path: Path, text: str, steps: Mapping[str, StepType[Any]], models: Mapping[str, type[Any]],
        *, environ: Mapping[str, str], origins: Mapping[str, str],
        pipeline_check: Callable[[PipelineConfig], Iterable[str]] = lambda _pipeline: (),
        disabled: Mapping[str, str],
    ) -> None:
        self.file = str(path)
        self.path = path
        self.positions = PositionIndex(text)
        self.step_types = steps
        self.models = models
        self.environ = environ
        self.origins = origins
        self.pipeline_check = pipeline_check
        self.disabled = disabled
        self.upstream_names = frozenset({DATA_SERVICE})
        self.errors: list[ConfigError] = []

    def error(self, where: Sequence[str | int], message: str) -> None:
        self.errors.append(ConfigError(self.file, self.positions.line_of(where), message))

    def load(self, data: dict[str, Any]) -> PipelineFile:
        raw = self.structured(data, RawFile, ())
        if raw is None:
            return PipelineFile(self.path, ())
        # Every declared name is known to the steps, even one whose table has errors of its own.
        self.upstream_names = frozenset({DATA_SERVICE, *raw.upstreams})
        upstreams = [
            self.upstream(name, upstream) for name, table in raw.upstreams.items()
            if (upstream := self.structured(table, RawUpstream, ("upstreams", name))) is not None
        ]
        pipelines = [
            self.pipeline(i, pipeline) if (pipeline := self.structured(table, RawPipeline, ("pipelines", i))) else None
            for i, table in enumerate(raw.pipelines)
        ]
        subscriptions = [
            self.subscription(i, s) if (s := self.structured(table, RawSubscription, ("subscriptions", i))) else None
            for i, table in enumerate(raw.subscriptions)
        ]
        self.check_unique(pipelines, subscriptions)
        for index, loaded in enumerate(pipelines):
            if loaded is not None:
                for problem in self.pipeline_check(loaded):
                    self.error(("pipelines", index), problem)
        return PipelineFile(
            self.path,
            tuple(p for p in pipelines if p is not None),
            tuple(s for s in subscriptions if s is not None),
            tuple(u for u in upstreams if u is not None),
        )

    def structured(self, data: Any, cls: type[T], where: tuple[str | int, ...]) -> T | None:
        """`data` as `cls`, or None with every error of it recorded at its place in the file. An
        unknown key is recorded and left out, so the rest is still checked (the file's other
        errors are reported in the same run, not one fix at a time)."""
        data = self.known_keys(data, cls, where, lambda path, key: f"{format_path(path)}: unknown setting {key!r}")
        try:
            return converter.structure(data, cls)
        except Exception as exc:  # cattrs raises groups of anything
            for sub, message in iter_errors(exc):
                path = (*where, *sub)
                self.error(path, f"{format_path(path)}: {message}")
            return None

    def known_keys(
        self, data: Any, cls: type[Any], where: tuple[str | int, ...],
        message: Callable[[tuple[str | int, ...], str], str],
    ) -> Any:
        """`data` without the keys `cls` does not have, each recorded as an error."""
        if not isinstance(data, dict) or not attrs.has(cls):
            return data
        known = {field.name for field in attrs.fields(cls)}
        for key in data:
            if key not in known:
                self.error((*where, key), message((*where, key), key))
        return {key: value for key, value in data.items() if key in known}

    def upstream(self, name: str, raw: RawUpstream) -> UpstreamConfig | None:
        upstream, problems = check_upstream(name, raw, self.environ, self.positions.line_of(("upstreams", name)))
        for where, message in problems:
            self.error(where, message)
        return upstream

    def pipeline(self, index: int, raw: RawPipeline) -> PipelineConfig | None:
        where: tuple[str | int, ...] = ("pipelines", index)
        label = f"pipeline {raw.name!r}"
        route = None
        try:
            route = parse_route(raw.route)
        except ValueError as exc:
            self.error((*where, "route"), f"{label}: {exc}")
        for kind, model in (("body", raw.body), ("query", raw.query)):
            if model is not None and model not in self.models:
                if f"model:{model}" in self.disabled:
                    self.error((*where, kind), f"{label}: {kind} model {model!r} is added by plugin "
                               f"{self.disabled[f'model:{model}']!r}, which TURNSTILE_DISABLE_PLUGINS disables")
                    continue
                known = ", ".join(sorted(self.models)) or "none"
                self.error((*where, kind), f"{label}: {kind} model {model!r} is not registered (known: {known})")
        params = set(route.params) if route else None
        steps = self.steps((*where, "steps"), label, raw.steps, params, for_messages=False)
        if route is None or steps is None:
            return None
        return PipelineConfig(
            name=raw.name, route=route, steps=steps, body=raw.body, query=raw.query, summary=raw.summary,
            description=raw.description, tags=tuple(raw.tags), line=self.positions.line_of(where),
        )

    def subscription(self, index: int, raw: RawSubscription) -> SubscriptionConfig | None:
        where: tuple[str | int, ...] = ("subscriptions", index)
        label = f"subscription {raw.name!r}"
        if not raw.bindings:
            self.error((*where, "bindings"), f"{label}: needs at least one binding key")
        steps = self.steps((*where, "steps"), label, raw.steps, None, for_messages=True)
        if steps is None:
            return None
        return SubscriptionConfig(
            name=raw.name, queue=raw.queue, bindings=tuple(raw.bindings), steps=steps,
            delivery="each-instance" if raw.delivery == "each-instance" else "shared",
            prefetch=raw.prefetch, max_retries=raw.max_retries, retry_delay_s=raw.retry_delay_s,
            max_wait_s=raw.max_wait_s,
            line=self.positions.line_of(where),
        )

    def steps(
        self, where: tuple[str | int, ...], label: str, raw_steps: list[dict[str, Any]],
        params: set[str] | None, *, for_messages: bool,
    ) -> tuple[ConfiguredStep, ...] | None:
        before = len(self.errors)
        if not raw_steps:
            self.error(where, f"{label}: needs at least one step")
        built = []
        for i, settings in enumerate(raw_steps):
            step = self.step((*where, i), f"{label}, step {i + 1}", settings, params, for_messages)
            if step is not None:
                built.append(step)
        if len(self.errors) == before and not for_messages:
            self.check_order(where, label, built)
        return tuple(built) if len(self.errors) == before else None

    def step(
        self, where: tuple[str | int, ...], label: str, settings: dict[str, Any],
        params: set[str] | None, for_messages: bool,
    ) -> ConfiguredStep | None:
        settings = dict(settings)
        use = settings.pop("use", None)
        if not isinstance(use, str):
            self.error(where, f"{label}: every step needs 'use = \"<step type>\"'")
            return None
        step_type = self.step_types.get(use)
        if step_type is None:
            if use in self.disabled:
                self.error((*where, "use"), f"{label}: step type {use!r} is added by plugin "
                           f"{self.disabled[use]!r}, which TURNSTILE_DISABLE_PLUGINS disables")
                return None
            known = ", ".join(sorted(self.step_types)) or "none"
            self.error((*where, "use"), f"{label}: unknown step type {use!r} (known: {known})")
            return None
        label = f"{label} ({use})"
        if for_messages and step_type.build_for_message is None:
            self.error((*where, "use"), f"{label}: this step type cannot stand in a subscription")
            return None
        settings = self.known_keys(settings, step_type.config_cls, where,
                                   lambda _path, key: f"{label}: {key}: unknown setting {key!r}")
        try:
            config = converter.structure(settings, step_type.config_cls)
        except Exception as exc:  # cattrs and attrs validators raise anything
            for sub, message in iter_errors(exc):
                prefix = f"{format_path(sub)}: " if sub else ""
                self.error((*where, *sub), f"{label}: {prefix}{message}")
            return None
        if params is not None:
            self.check_templates(where, label, step_type, config, params)
            if step_type.check is not None:
                context = CheckContext(frozenset(params), frozenset(self.models), self.upstream_names, self.models)
                try:
                    problems = list(step_type.check(config, context))
                except Exception as exc:  # a plugin's check: anything; the file's other errors still count
                    problems = [f"the check of plugin {self.origins.get(use, '?')} failed: {type(exc).__name__}: {exc}"]
                for problem in problems:
                    self.error(where, f"{label}: {problem}")
        return ConfiguredStep(step_type, config, self.positions.line_of(where), self.origins.get(use, ""))

    def check_templates(
        self, where: tuple[str | int, ...], label: str, step_type: StepType[Any], config: Any, params: set[str]
    ) -> None:
        for name, template in template_settings(config):
            self.check_template(where, label, name, template, params)

    def check_template(
        self, where: tuple[str | int, ...], label: str, name: str, template: str, params: set[str]
    ) -> None:
        try:
            names = template_placeholders(template)
        except ValueError as exc:
            self.error((*where, name), f"{label}: {name}: bad template {template!r}: {exc}")
            return
        for placeholder in names:
            if placeholder not in params and placeholder not in RESERVED_PLACEHOLDERS:
                have = ", ".join(sorted(params)) or "none"
                self.error(
                    (*where, name),
                    f"{label}: {name}: placeholder {{{placeholder}}} names no route parameter (route has: {have})",
                )

    def check_order(self, where: tuple[str | int, ...], label: str, steps: list[ConfiguredStep]) -> None:
        first_wrapper: tuple[int, ConfiguredStep] | None = None
        for i, step in enumerate(steps):
            if step.kind is StepKind.WRAPPER and not step.type.observes_only and first_wrapper is None:
                first_wrapper = (i, step)
            if step.kind is StepKind.GUARD and first_wrapper is not None:
                # The guards run first, then the rules gate: a wrapper ahead of a guard acts for
                # callers the guard has not checked (a cache before auth answered anonymous
                # callers from it; contract §8: auth runs before the cache, always).
                j, wrapper = first_wrapper
                self.error((*where, i), f"{label}, step {i + 1} ({step.type.name}): a guard must stand before every "
                           f"wrapper but those that only observe, and step {j + 1} ({wrapper.type.name}) would run "
                           "before it")
            last = i == len(steps) - 1
            if step.kind is StepKind.TERMINAL and not last:
                self.error((*where, i), f"{label}, step {i + 1} ({step.type.name}): answers the request, "
                           "so it must be the last step")
            if last and step.kind is not StepKind.TERMINAL:
                self.error((*where, i), f"{label}: the last step ({step.type.name}) passes the request on, "
                           "but nothing follows it: end with a step that answers (e.g. data-fetch)")

    def check_unique(
        self, pipelines: list[PipelineConfig | None], subscriptions: list[SubscriptionConfig | None]
    ) -> None:
        seen_routes: dict[tuple[str, str], PipelineConfig] = {}
        seen_names: dict[str, int] = {}
        for index, pipeline in enumerate(pipelines):
            if pipeline is None:
                continue
            key = (pipeline.route.method, ROUTE_PARAM.sub("{}", pipeline.route.path))
            if key in seen_routes:
                other = seen_routes[key]
                self.error(("pipelines", index, "route"), f"pipeline {pipeline.name!r}: duplicate route "
                           f"{pipeline.route} (also pipeline {other.name!r} at line {other.line})")
            seen_routes.setdefault(key, pipeline)
            self.check_name(("pipelines", index), "pipeline", pipeline.name, seen_names)
        taken: dict[str, SubscriptionConfig] = {}  # each queue name a subscription uses: its own, its dead letters'
        for index, sub in enumerate(subscriptions):
            if sub is None:
                continue
            self.check_name(("subscriptions", index), "subscription", sub.name, seen_names)
            # One queue, two subscriptions: their consumers would share its messages, each event
            # going to one of them only, with the other's steps (half of them not invalidated);
            # one's queue another's dead letters: a queue of another kind, retried for ever.
            for name in (sub.queue, f"{sub.queue}{DEAD_LETTER_SUFFIX}"):
                first = taken.setdefault(name, sub)
                if first is not sub:
                    self.error(("subscriptions", index, "queue"), f"subscription {sub.name!r}: queue {name!r} is "
                               f"taken by subscription {first.name!r} (line {first.line}): each needs a queue of its "
                               f"own, and {DEAD_LETTER_SUFFIX} after it is its dead letters'")
                    break

    def check_name(self, where: tuple[str | int, ...], kind: str, name: str, seen: dict[str, int]) -> None:
        line = self.positions.line_of(where)
        if not _NAME.match(name):
            self.error((*where, "name"), f"{kind} name {name!r} must be lower_snake_case")
        if name in seen:
            self.error((*where, "name"), f"{kind} name {name!r} is used twice (first at line {seen[name]})")
        seen.setdefault(name, line)


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_TOML_END = re.compile(r" ?\(at end of document\)")


def load_pipelines(
    path: Path, steps: Mapping[str, StepType[Any]], models: Mapping[str, type[Any]], *,
    environ: Mapping[str, str] | None = None, origins: Mapping[str, str] | None = None,
    pipeline_check: Callable[[PipelineConfig], Iterable[str]] = lambda _pipeline: (),
    disabled: Mapping[str, str] | None = None,
) -> PipelineFile:
    """Read, parse and check a pipelines file.

    Args:
        environ: where the upstream tables' ``${VAR}``s are looked up (default: ``os.environ``).
        origins: the plugin that added each step type, by its name (messages name it).
        pipeline_check: more problems of a loaded pipeline, reported at its route's line with
            every other error of the file (`load_checked`: a route the service's own routes take).
        disabled: what disabled plugins would add, keyed as `origins`, and the plugin (messages say so).

    Raises:
        PipelineFileError: with every problem found, each as ``FILE:LINE: message``.
    """
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineFileError([ConfigError(str(path), 0, f"cannot read the file: {exc}")]) from exc
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        # tomllib names no line for what runs into the end of the file (a bracket or a string
        # left open): that is the last line, where an editor shows the file ending.
        at_end = _TOML_END.search(str(exc)) is not None
        line = int(match.group(1)) if match else max(1, len(text.splitlines())) if at_end else 1
        message = _TOML_END.sub(" at the end of the file", _TOML_LINE.sub("", str(exc))).strip()
        raise PipelineFileError([ConfigError(str(path), line, f"TOML syntax error: {message}")]) from exc
    loader = _Loader(path, text, steps, models, environ=os.environ if environ is None else environ,
                     origins=origins or {}, pipeline_check=pipeline_check,
                     disabled=disabled or {})
    result = loader.load(parsed)
    if loader.errors:
        raise PipelineFileError(loader.errors)
    # The digest of the bytes read, so it names exactly the file these routes came from.
    return attrs.evolve(result, sha256=hashlib.sha256(data).hexdigest())


def iter_steps(file: PipelineFile) -> Iterator[tuple[PipelineConfig, ConfiguredStep]]:
    for pipeline in file.pipelines:
        for step in pipeline.steps:
            yield pipeline, step
