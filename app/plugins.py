"""The plugin manager: entry points, disabling by name, tracing, and awaiting async hooks."""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, cast, final

import pluggy
from aiohttp import web

from app import hookspecs
from app.errors import GatewayTimeout, InternalError
from app.keys import settings_key
from app.pipeline.types import PipelineConfig
from app.plugin_loading import PluginLoadError, call_at_load
from app.redact import Redacted

ENTRY_POINT_GROUP = "turnstile.plugins"
DISTRIBUTION = "turnstile"

log = logging.getLogger("turnstile.plugins")
# Hook tracing has its own logger so TURNSTILE_TRACE_HOOKS can switch it on alone. Every
# argument and result it logs goes through app.redact: hooks see passwords, hashes and tokens.
trace_log = logging.getLogger("turnstile.hooks")

# How long an async hook implementation may take when no settings say (TURNSTILE_HOOK_TIMEOUT_S).
DEFAULT_HOOK_TIMEOUT_S: Final = 10.0


def make_plugin_manager(
    *,
    entrypoints: bool = True,
    extra: Iterable[object] = (),
    disabled: Sequence[str] = (),
    trace: bool = False,
    modules: Sequence[str] = (),
) -> pluggy.PluginManager:
    """A plugin manager with every installed plugin of the `turnstile.plugins` group.

    Args:
        entrypoints: load installed plugins (built-ins included: they register the same way).
        extra: plugin objects to register as well (tests, embedding).
        disabled: plugin names (entry-point names) to block before loading.
        trace: log every hook call and its result (TURNSTILE_TRACE_HOOKS=1).
        modules: dotted module names to import and register (TURNSTILE_PLUGINS).

    Raises:
        PluginLoadError: a plugin cannot be loaded as written: an implementation that does not fit
            its hook spec, an ``async def`` load-time hook, a module that does not import.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    if entrypoints:
        # The built-ins first, so that they are the first implementations called (see
        # `implementations`); then every other installed plugin.
        for name in _built_in_entry_points():
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    try:
        for module in modules:
            if module not in disabled:
                pm.register(_import(module), name=module)
        for plugin in extra:
            if not pm.is_registered(plugin):
                pm.register(plugin)
        _refuse_async_load_time_hooks(pm)
        for _plugin_name, holder in offered_hookspecs(pm):
            pm.add_hookspecs(holder)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"plugin {_name_of(pm, exc.plugin)}: {exc}") from exc
    trace_log.setLevel(logging.INFO if trace else logging.WARNING)
    if trace:
        pm.add_hookcall_monitoring(_before_hook, _after_hook)
    return pm


def _import(module: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # anything its import runs may raise
        msg = f"TURNSTILE_PLUGINS: {module!r} cannot be imported: {type(exc).__name__}: {exc}"
        raise PluginLoadError(msg) from exc


def _name_of(pm: pluggy.PluginManager, plugin: object) -> str:
    return pm.get_name(plugin) or repr(plugin)


def _refuse_async_load_time_hooks(pm: pluggy.PluginManager) -> None:
    """Load-time hooks are called where nothing awaits them: an ``async def`` one would never run."""
    for name in hookspecs.LOAD_TIME_HOOKS:
        for impl in getattr(pm.hook, name).get_hookimpls():
            if inspect.iscoroutinefunction(impl.function) or inspect.isasyncgenfunction(impl.function):
                msg = (f"plugin {impl.plugin_name}: {name} must be a plain def, not async def: it runs once, "
                       "while the app is put together, where nothing awaits it")
                raise PluginLoadError(msg)


def unknown_plugin_names(names: Iterable[str], modules: Sequence[str] = ()) -> list[str]:
    """The `names` (TURNSTILE_DISABLE_PLUGINS) that name no installed plugin and no module of
    `modules` (TURNSTILE_PLUGINS): a misspelt name would otherwise disable nothing, silently."""
    known = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)} | set(modules)
    return [name for name in names if name not in known]


def disabled_origins(pm: pluggy.PluginManager) -> dict[str, str]:
    """What the plugins TURNSTILE_DISABLE_PLUGINS blocks would add, keyed as `Registry.origins`
    is (a step type by its name, a model as ``model:<name>``), with the plugin's name: a
    pipelines file that still uses one is told why it is unknown.

    A blocked plugin was never loaded; its `register_steps` and `register_models` are imported
    and called here alone. Whatever goes wrong doing so only leaves the messages as they were.
    """
    blocked = [name for name, plugin in pm.list_name_plugin() if plugin is None]
    if not blocked:
        return {}
    entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    found: dict[str, str] = {}
    for name in blocked:
        try:
            holder = entry_points[name].load() if name in entry_points else importlib.import_module(name)
            for hook, key in (("register_steps", lambda added: added.name),
                              ("register_models", lambda added: f"model:{added.__name__}")):
                register = getattr(holder, hook, None)
                if register is None or getattr(register, f"{hookspecs.PROJECT_NAME}_impl", None) is None:
                    continue  # not an implementation of this hook
                for added in cast("Sequence[Any]", register() or ()):
                    found.setdefault(key(added), name)
        except Exception:  # noqa: S112  # a disabled plugin's failure is not this run's
            continue
    return found


def _built_in_entry_points() -> list[str]:
    """The entry-point names this package itself registers in the plugin group, in order."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return []
    return [ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]


def offered_hookspecs(pm: pluggy.PluginManager) -> list[tuple[str, types.ModuleType | type]]:
    """(plugin name, module or class of ``@hookspec`` functions) for every holder a plugin
    offers other plugins through `register_hookspecs`, in load order."""
    return [
        (impl.plugin_name, holder)
        for impl in pm.hook.register_hookspecs.get_hookimpls()
        for holder in cast("Sequence[types.ModuleType | type]", call_at_load(impl) or ())
    ]


def hookspec_names(holder: object) -> list[str]:
    """The names of the hook specs in a holder `register_hookspecs` returned."""
    return sorted(
        name for name in dir(holder)
        if getattr(getattr(holder, name), f"{hookspecs.PROJECT_NAME}_spec", None) is not None
    )


def _before_hook(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
    trace_log.info("hook %s -> %s with %r", hook_name, [impl.plugin_name for impl in impls], _arguments(kwargs))


def _after_hook(
    outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
) -> None:
    exc = outcome.exception
    if exc is not None:
        trace_log.info("hook %s raised %r", hook_name, Redacted(exc))
    else:
        trace_log.info("hook %s returned %r", hook_name, Redacted(outcome.get_result()))


def _arguments(kwargs: Mapping[str, Any]) -> Redacted:
    """A hook's arguments for a trace line: secrets masked, a pipeline shown by its name."""
    return Redacted({
        name: _PipelineName(value.name) if isinstance(value, PipelineConfig) else value
        for name, value in kwargs.items()
    })


@final
class _PipelineName:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"


# A `startup` hook may take its time (a warm-up, a slow first connection): one that never ends
# keeps the pod unready, which its probes show; failing it after a bound would crash-loop a pod
# whose start is merely slow.
_UNBOUNDED: Final = frozenset({"startup"})


class HookTimeout(GatewayTimeout):
    """504: an async hook implementation did not return within TURNSTILE_HOOK_TIMEOUT_S."""


def _hook_timeout_s(args: Mapping[str, Any]) -> float:
    """The app's hook deadline: every may-be-async hook gets the request or the app."""
    request = args.get("request")
    app = request.app if isinstance(request, web.Request) else args.get("app")
    settings = app.get(settings_key) if isinstance(app, web.Application) else None
    return DEFAULT_HOOK_TIMEOUT_S if settings is None else settings.hook_timeout_s


async def _in_time(result: Awaitable[Any], timeout_s: float, hook: pluggy.HookCaller, impl: pluggy.HookImpl) -> Any:
    """An async implementation's result, or a HookTimeout once it has taken `timeout_s`: a
    rule waiting on a service that never answers must not hold its request for good
    (contract §11: a failing hook is an error for that request, never a hang)."""
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await result
    except TimeoutError:
        if not deadline.expired():  # the hook's own timeout, raised through: its failure as it is
            raise
        log.error("hook %s of plugin %s did not return within %s s", hook.name, impl.plugin_name, timeout_s)
        msg = "A business rule did not answer in time; try again later."
        raise HookTimeout(msg) from None


def implementations(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """The plain implementations of `hook` in Turnstile's call order.

    Plugins are called in the order they were loaded: the built-ins first, then installed
    plugins, then TURNSTILE_PLUGINS modules, then plugins passed in by code, so a team's
    rule sees what the built-ins made of a request. An implementation marked
    ``@hookimpl(tryfirst=True)`` runs before all others, ``trylast=True`` after all others.
    (pluggy itself calls the last registered first; `call_all` and `call_chain` use this
    order instead.) Wrappers are left out: a may-be-async hook never has them.
    """
    plain = [impl for impl in hook.get_hookimpls() if not (impl.hookwrapper or impl.wrapper)]
    return sorted(plain, key=lambda impl: 0 if impl.tryfirst else 2 if impl.trylast else 1)


def has_implementations(hook: pluggy.HookCaller) -> bool:
    """Whether any plugin implements `hook`; ask at build time to skip a hook nobody uses."""
    return bool(implementations(hook))


async def call_impl(hook: pluggy.HookCaller, impl: pluggy.HookImpl, args: Mapping[str, Any]) -> Any:
    """Call one implementation with the arguments it declares (pluggy lets an implementation
    take fewer than the spec offers) and await its result when it is async; traced when on."""
    traced = trace_log.isEnabledFor(logging.INFO)
    if traced:
        trace_log.info("hook %s [%s] with %r", hook.name, impl.plugin_name, _arguments(args))
    try:
        result = impl.function(*(args[name] for name in impl.argnames))
        if inspect.isawaitable(result):
            result = await (result if hook.name in _UNBOUNDED else _in_time(result, _hook_timeout_s(args), hook, impl))
    except Exception as exc:
        # The traceback logged for it then names whose code failed, not only where.
        exc.add_note(f"(in hook {hook.name} of plugin {impl.plugin_name})")
        raise
    if traced:
        trace_log.info("hook %s [%s] returned %r", hook.name, impl.plugin_name, Redacted(result))
    return result


async def call_all(hook: pluggy.HookCaller, **kwargs: Any) -> list[Any]:
    """Call every implementation of a may-be-async hook, one after the other, each awaited
    before the next starts; the non-None results in call order.

    The first implementation to raise stops the call: none after it runs, and no coroutine
    is left un-awaited.
    """
    return await call_each(hook, implementations(hook), **kwargs)


async def call_each(hook: pluggy.HookCaller, impls: Sequence[pluggy.HookImpl], **kwargs: Any) -> list[Any]:
    """`call_all` with the implementations (`implementations(hook)`) worked out beforehand: a
    pipeline built at start-up calls its hooks on every request with the order it computed once."""
    results = []
    for impl in impls:
        result = await call_impl(hook, impl, kwargs)
        if result is not None:
            results.append(result)
    return results


async def call_chain(
    hook: pluggy.HookCaller, value_name: str, value: Any, *, expect: type | None = None,
    check: Callable[[Any], str | None] | None = None, **kwargs: Any,
) -> Any:
    """Thread `value` through every implementation: each sees the previous one's result.

    An implementation returning None keeps the value; one returning False ends the chain
    with False (used to suppress). Implementations run in Turnstile's call order
    (`implementations`: load order), one at a time, so each can be async.

    Args:
        expect: the type a new value must have (a dict for a body, say).
        check: what is wrong with a new value (None: nothing), e.g. an answer that no longer fits
            its model: the implementation that returned it is named, not the chain.

    Raises:
        InternalError: an implementation returned something else than None, False or an `expect`,
            or a value `check` finds wrong: the plugin's fault, logged with its name, not the client's.
    """
    for impl in implementations(hook):
        result = await call_impl(hook, impl, {value_name: value, **kwargs})
        if result is False:
            return False
        if result is not None:
            if expect is not None and not isinstance(result, expect):
                log.error("hook %s of plugin %s returned a %s, not a %s or None", hook.name, impl.plugin_name,
                          type(result).__name__, expect.__name__)
                msg = "A business rule failed."
                raise InternalError(msg)
            if check is not None and (problem := check(result)) is not None:
                log.error("hook %s of plugin %s returned what its %s cannot be: %s", hook.name, impl.plugin_name,
                          value_name, problem)
                msg = "A business rule failed."
                raise InternalError(msg)
            value = result
    return value


def plugin_names(pm: pluggy.PluginManager) -> dict[str, object]:
    """Registered plugins by name (entry-point name for installed ones)."""
    return {name: plugin for name, plugin in pm.list_name_plugin() if plugin is not None}
