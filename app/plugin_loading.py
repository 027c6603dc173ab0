"""Loading plugins: the one error a plugin that cannot load as written gives, and the call of a
load-time hook that turns whatever it raises into that error, naming the plugin and the hook.

Load-time hooks (`register_steps`, `register_routes`, ...) run while the app is put together,
and by `turnstile check`: a bug there is reported in one line, never as a traceback of the core.
"""

from __future__ import annotations

from typing import Any

import pluggy


class PluginLoadError(Exception):
    """A plugin cannot be loaded as written; the message names it and what is wrong, in one line."""


def call_at_load(impl: pluggy.HookImpl) -> Any:
    """What a load-time hook implementation (no arguments) returns; PluginLoadError naming the
    plugin and the hook when it raises (a `PluginRoute` missing an argument, say)."""
    try:
        return impl.function()
    except Exception as exc:  # a plugin's code: anything
        name = getattr(impl.function, "__name__", "a hook")
        msg = f"plugin {impl.plugin_name}: {name} raised {type(exc).__name__}: {exc}"
        raise PluginLoadError(msg) from exc
