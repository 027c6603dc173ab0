"""Settings a plugin owns: an attrs class whose fields are environment variables under its prefix.

A plugin returns such classes from its `register_settings` hook. Each field is made with
`setting()`; its variable is the class's ``env_prefix`` followed by the field's name in
capitals (``ACME_`` + ``allowed_email_domains`` → ``ACME_ALLOWED_EMAIL_DOMAINS``), unless the
field names its variable itself (``env=``, for names that predate the prefix). They are read
at start-up together with the core's settings, and every bad variable, the core's and each
plugin's, gets its own line in one report (`SettingsError`).

A settings class may also define, as plain methods:

- ``check(self, production: bool) -> Iterable[str]``: problems across fields, and what the
  plugin requires when ``TURNSTILE_ENV=production`` (each a line of the report);
- ``embedded_defaults(self) -> Iterable[str]``: the development stand-ins in use, named in the
  one start-up log line that announces every embedded default.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar, cast, final

import attrs
import pluggy
from aiohttp import web

from app.plugin_loading import PluginLoadError, call_at_load
from app.settings import _flag, _Reader

T = TypeVar("T")

_SPEC: Final = "turnstile.setting"


@attrs.frozen
class _Spec:
    description: str
    secret: bool
    parse: Callable[[str], Any] | None
    env: str | None


def setting(
    *,
    description: str,
    default: Any = attrs.NOTHING,
    secret: bool = False,
    parse: Callable[[str], Any] | None = None,
    env: str | None = None,
) -> Any:
    """An attrs field read from an environment variable (see the module's docstring).

    Args:
        description: one line for `turnstile plugins` and the docs.
        default: the value when the variable is unset or empty; without one the variable is
            required and its absence is a problem of the report.
        secret: kept out of ``repr`` and never echoed in a problem or a listing; the value
            may also come from a file named by ``<NAME>_FILE`` (setting both is a problem).
        parse: turns the text into the value; it raises ``ValueError(what was expected)``,
            e.g. ``ValueError("a positive whole number")``. Without it the field's type says
            how: ``str``, ``int``, ``float``, ``bool`` (1/0, true/false, yes/no, on/off),
            ``Path``, ``tuple[str, ...]`` (comma-separated), or any of them ``| None``.
        env: the variable's full name, instead of the class's prefix and the field's name.
    """
    spec = _Spec(description=description, secret=secret, parse=parse, env=env)
    return attrs.field(default=default, repr=not secret, metadata={_SPEC: spec})


def positive_int(value: str) -> int:
    """A `setting` parser: a whole number above zero."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        msg = "a positive whole number"
        raise ValueError(msg)
    return number


def _whole_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        msg = "a whole number"
        raise ValueError(msg) from None


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        msg = "a number"
        raise ValueError(msg) from None


def _boolean(value: str) -> bool:
    try:
        return _flag(value)
    except ValueError:
        msg = "1/0, true/false, yes/no, on/off"
        raise ValueError(msg) from None


def _comma_separated(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


_PARSERS: Final[dict[Any, Callable[[str], Any]]] = {
    str: str, int: _whole_number, float: _number, bool: _boolean, Path: Path, tuple[str, ...]: _comma_separated,
}


@final
@attrs.frozen
class SettingInfo:
    """One variable of a plugin's settings, as `turnstile plugins` lists it (never a value)."""

    variable: str
    default: str  # what applies when unset; "(required)" or "(secret)" where no value is shown
    description: str
    secret: bool
    file_variable: str | None  # where a secret may be read from instead


def _fields(cls: type[Any]) -> list[tuple[attrs.Attribute[Any], _Spec, str]]:
    """(field, spec, variable) of every field of a settings class.

    Raises:
        TypeError: not an attrs class, a field not made with `setting()`, or a type with no
            known parser and no ``parse=``: the plugin's bug, reported at start-up.
    """
    if not attrs.has(cls):
        msg = f"{cls.__qualname__} is not an attrs class: settings classes are (see app.setting)"
        raise TypeError(msg)
    prefix = getattr(cls, "env_prefix", "")
    hints = typing.get_type_hints(cls) if attrs.has(cls) else {}
    out = []
    for field in attrs.fields(cls):
        spec = field.metadata.get(_SPEC)
        if not isinstance(spec, _Spec):
            msg = f"{cls.__qualname__}.{field.name} is not made with setting()"
            raise TypeError(msg)
        if spec.parse is None and _parser_for(hints[field.name]) is None:
            msg = f"{cls.__qualname__}.{field.name}: no parser for {hints[field.name]!r}; give setting(parse=...)"
            raise TypeError(msg)
        if spec.env is None and not prefix:
            # Its variable would be the bare field name: `path` would read PATH, `user` USER.
            msg = (f"{cls.__qualname__}.{field.name}: the class has no env_prefix (a ClassVar such as "
                   f"\"ACME_\"), so its variable would be {field.name.upper()}, anyone's variable")
            raise TypeError(msg)
        out.append((field, spec, spec.env or f"{prefix}{field.name.upper()}"))
    return out


def _parser_for(annotation: Any) -> Callable[[str], Any] | None:
    parser = _PARSERS.get(annotation)
    if parser is not None:
        return parser
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        return _PARSERS.get(rest[0]) if len(rest) == 1 else None
    return None


def read_settings_class(cls: type[T], reader: _Reader, *, production: bool) -> T | None:
    """An instance of `cls` from the environment `reader` holds; each bad variable (and each
    problem of ``cls.check``) is added to ``reader.problems`` and its field keeps its default.
    None when a required variable is absent or bad."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    missing = False
    for field, spec, variable in _fields(cls):
        text = _raw(reader, variable, spec)
        if text is None:
            if field.default is attrs.NOTHING:
                if variable not in reader.set_twice:  # set twice is its own line
                    reader.problems.append(f"{variable}: required")
                missing = True
            continue
        parse = spec.parse or _parser_for(hints[field.name])
        assert parse is not None  # _fields refused the field otherwise
        try:
            values[field.name] = parse(text)
        except ValueError as exc:
            shown = variable if spec.secret else f"{variable}={text!r}"
            reader.problems.append(f"{shown}: expected {exc}")
            missing = missing or field.default is attrs.NOTHING
    if missing:
        return None
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if callable(check):
        # A secret set twice is one problem already: the class's "required" for it (it reads
        # the secret as unset) would send the operator looking for a missing one.
        both = tuple(f"{variable} or {variable}_FILE: required" for variable in reader.set_twice)
        reader.problems.extend(line for line in check(production) if not line.startswith(both))
    return instance


def _raw(reader: _Reader, variable: str, spec: _Spec) -> str | None:
    """The variable's text; for a secret, ``<NAME>_FILE``'s content first (read once, here)."""
    if spec.secret:
        path = reader.raw(f"{variable}_FILE")
        if path is not None and reader.raw(variable) is not None:
            # Which one wins would be a guess the operator never sees (one of them rotated, say).
            reader.problems.append(f"{variable} and {variable}_FILE are both set: set one of them")
            reader.set_twice.add(variable)
            return None
        if path is not None:
            try:
                return Path(path).read_text().strip() or None
            except OSError as exc:
                reader.problems.append(f"{variable}_FILE={path!r}: cannot be read ({exc.strerror})")
                return None
    return reader.raw(variable)


def describe(cls: type[Any]) -> list[SettingInfo]:
    """Every variable of a settings class with its default and description, never a value."""
    infos = []
    for field, spec, variable in _fields(cls):
        if field.default is attrs.NOTHING:
            default = "(required)"
        elif spec.secret:
            default = "(secret)"
        else:
            default = _show(field.default)
        file_variable = f"{variable}_FILE" if spec.secret else None
        infos.append(SettingInfo(variable, default, spec.description, spec.secret, file_variable))
    return infos


def _show(value: Any) -> str:
    if value is None or value in ((), ""):
        return "-"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


@final
class PluginSettings:
    """The settings object of every class the app's plugins registered, by class."""

    def __init__(self, values: Mapping[type[Any], Any]) -> None:
        self._values = dict(values)

    def get(self, cls: type[T]) -> T:
        """The instance of `cls`.

        Raises:
            LookupError: no plugin of this app registered `cls` (`register_settings`).
        """
        try:
            return cast("T", self._values[cls])
        except KeyError:
            msg = f"{cls.__qualname__} is not registered by any plugin of this app (register_settings)"
            raise LookupError(msg) from None

    def __iter__(self) -> typing.Iterator[Any]:
        return iter(self._values.values())


_values_key: Final = web.AppKey("plugin_settings", PluginSettings)


def plugin_settings(app: web.Application, cls: type[T]) -> T:
    """The settings (of class `cls`, registered by a plugin) the app was built with.

    Raises:
        LookupError: no plugin of this app registered `cls`.
    """
    return app[_values_key].get(cls)


def set_plugin_settings(app: web.Application, values: PluginSettings) -> None:
    app[_values_key] = values


def registered_settings(pm: pluggy.PluginManager) -> list[tuple[str, type[Any]]]:
    """(plugin name, settings class) for every class a plugin registered, in load order.

    Raises:
        PluginLoadError: a class that is not a settings class as `setting()` makes them.
    """
    registered = [
        (impl.plugin_name, cls)
        for impl in pm.hook.register_settings.get_hookimpls()
        for cls in cast("Sequence[type[Any]]", call_at_load(impl) or ())
    ]
    for plugin, cls in registered:
        try:
            _fields(cls)
        except TypeError as exc:
            msg = f"plugin {plugin}: register_settings: {exc}"
            raise PluginLoadError(msg) from exc
    return registered


def read_plugin_settings(
    pm: pluggy.PluginManager, environ: Mapping[str, str], *, production: bool
) -> tuple[PluginSettings, list[str]]:
    """Every plugin's settings from `environ`, and the problems found (one line each)."""
    reader = _Reader(environ)
    values: dict[type[Any], Any] = {}
    owners: dict[str, str] = {}
    for plugin, cls in registered_settings(pm):
        for _field, _spec, variable in _fields(cls):
            if variable in owners and owners[variable] != plugin:
                reader.problems.append(f"{variable}: claimed by both {owners[variable]} and {plugin}")
            owners[variable] = plugin
        instance = read_settings_class(cls, reader, production=production)
        if instance is not None:
            values[cls] = instance
    return PluginSettings(values), reader.problems


# What Kubernetes puts in every pod for a Service in its namespace (a Service named "mail" makes
# MAIL_PORT, MAIL_SERVICE_HOST, ...): a prefix's look-alikes that are nobody's mistake.
_SERVICE_LINK = re.compile(r".*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?)?)")


def unknown_variables(pm: pluggy.PluginManager, environ: Mapping[str, str]) -> list[str]:
    """One line for each set variable under a plugin's `env_prefix` that no setting reads (a
    misspelt name is otherwise ignored without a word: the setting keeps its default), naming
    the closest setting."""
    known: set[str] = set()
    prefixes: set[str] = set()
    for _plugin, cls in registered_settings(pm):
        prefix = getattr(cls, "env_prefix", "")
        if prefix:
            prefixes.add(prefix)
        for _field, spec, variable in _fields(cls):
            known.update((variable, f"{variable}_FILE") if spec.secret else (variable,))
    lines = []
    for name in sorted(environ):
        if name in known or not name.startswith(tuple(prefixes)) or _SERVICE_LINK.fullmatch(name):
            continue
        near = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        lines.append(f"{name} is under a plugin's prefix, but no setting reads it{hint}")
    return lines


def embedded_defaults(values: Iterable[Any]) -> list[str]:
    """The development stand-ins the plugins' settings say are in use."""
    used: list[str] = []
    for instance in values:
        announce = getattr(instance, "embedded_defaults", None)
        if callable(announce):
            used.extend(announce())
    return used
