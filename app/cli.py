"""`turnstile` (and `python -m app`): serve, check, routes, plugins, openapi, asyncapi, dataservice,
and the commands plugins add (the users plugin's create-admin)."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import pluggy

from app.commands import Command, CommandContext, plugin_commands
from app.main import build_steps, prepare_app, read_configuration
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import RegistryError, load_checked, make_registry
from app.plugin_loading import PluginLoadError
from app.plugin_settings import PluginSettings, describe, embedded_defaults, registered_settings, unknown_variables
from app.plugins import hookspec_names, offered_hookspecs
from app.resources import resources_key
from app.settings import Settings, SettingsError, read_token_file, read_token_lines


def _parser(commands: Sequence[tuple[str, Command]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnstile", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)

    serve = subparsers.add_parser("serve", help="run the service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=_port_number)
    serve.add_argument("--workers", type=_worker_count, default=1, help="processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--pipelines", type=Path, help="pipelines file (default: PIPELINES_FILE)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    check = subparsers.add_parser("check", help="validate a pipelines file")
    check.add_argument("file", nargs="?", type=Path)

    routes = subparsers.add_parser("routes", help="each route, its pipeline and its steps")
    routes.add_argument("--pipelines", type=Path)
    subparsers.add_parser("plugins", help="installed plugins: hooks, step types, models, settings, resources")
    openapi = subparsers.add_parser("openapi", help="print the OpenAPI document")
    openapi.add_argument("--pipelines", type=Path)
    asyncapi = subparsers.add_parser("asyncapi", help="print the AsyncAPI document of the events")
    asyncapi.add_argument("--pipelines", type=Path)

    dataservice = subparsers.add_parser("dataservice", help="run the reference data service")
    dataservice.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    dataservice.add_argument("--port", type=int, default=8081)
    dataservice.add_argument("--db", default="var/data.sqlite3")
    dataservice.add_argument(
        "--token-file", type=Path,
        help="file holding the bearer token every call must carry (default: DATA_SERVICE_TOKEN[_FILE])",
    )
    dataservice.add_argument(
        "--previous-token-file", type=Path,
        help="file holding tokens still accepted during a rotation, one a line",
    )
    for plugin, command in commands:
        if command.name in subparsers.choices:
            msg = f"plugin {plugin}: the command {command.name!r} exists already"
            raise SettingsError([msg])
        sub = subparsers.add_parser(command.name, help=command.help)
        if command.arguments is not None:
            command.arguments(sub)
    return parser


def _with_arguments(settings: Settings, args: argparse.Namespace) -> Settings:
    changes = {}
    if getattr(args, "pipelines", None):
        changes["pipelines_file"] = args.pipelines
    if getattr(args, "host", None) and args.command == "serve":
        changes["host"] = args.host
    if getattr(args, "port", None) and args.command == "serve":
        changes["port"] = args.port
    return attrs.evolve(settings, **changes)


@attrs.frozen
class _Loaded:
    """What every command starts from: the core's settings, the plugins, their settings."""

    settings: Settings
    pm: pluggy.PluginManager
    plugin_settings: PluginSettings


def _port_number(text: str) -> int:
    if not (text.isdigit() and int(text) < 65536):
        msg = f"expected a port number 0-65535 (0: any free one), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


async def _awaited(work: Awaitable[Any]) -> Any:
    return await work


_PRODUCTION_REQUIRES: Final = "required when TURNSTILE_ENV=production"  # the words of each such problem


def _worker_count(text: str) -> int:
    if not (text.isdigit() and int(text) > 0):
        msg = f"expected a number of processes, 1 or more, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Settings come first (they name the plugins, and plugins add commands), but their
    # problems are reported after the arguments are parsed, so `--help` always works.
    try:
        settings, pm, values, problems = read_configuration()
    except PluginLoadError as exc:
        print(f"turnstile: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        commands = plugin_commands(pm)
        args = _parser(commands).parse_args(argv)
        if args.command == "dataservice":
            # The reference data service reads none of what production requires of the server
            # (its Redis, broker, secrets, mail): those are no reason to refuse to start it.
            problems = [problem for problem in problems if _PRODUCTION_REQUIRES not in problem]
        if problems:
            raise SettingsError(problems)
        loaded = _Loaded(_with_arguments(settings, args), pm, values)
        if args.command in _COMMANDS:
            return _COMMANDS[args.command](args, loaded, argv)
        command = next(command for _plugin, command in commands if command.name == args.command)
        status: Any = command.run(args, CommandContext(loaded.settings, pm, lambda: prepare_app(loaded.settings, pm)))
        if inspect.isawaitable(status):  # an `async def run`: run to its end, as a sync one would be
            status = asyncio.run(_awaited(status))
        return int(status)
    except (SettingsError, PluginLoadError) as exc:  # the latter: a plugin's load-time hook, met by a command
        for problem in exc.problems if isinstance(exc, SettingsError) else [str(exc)]:
            print(f"turnstile: {problem}", file=sys.stderr)  # noqa: T201
        return 2
    except PipelineFileError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)  # noqa: T201
        return 1
    except BrokenPipeError:
        # The reader went away (`turnstile openapi | head`): stop quietly, as other tools do,
        # and keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _cmd_serve(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    from app.logs import setup_logging  # noqa: PLC0415  # only the server needs logging set up
    from app.serve import CannotListen, run_workers, serve, use_fast_loop  # noqa: PLC0415
    from app.settings import announce_embedded_defaults  # noqa: PLC0415

    settings = loaded.settings
    setup_logging(settings.log_level, settings.log_format)
    for line in unknown_variables(loaded.pm, settings.environ):  # a misspelt name keeps the default silently
        logging.getLogger("turnstile.settings").warning(line)
    if args.workers > 1:
        missing = [name for name, value in (("DATA_SERVICE_URL", settings.data_service_url),
                                            ("REDIS_URL", settings.redis_url)) if value is None]
        if missing:
            print(f"turnstile: --workers {args.workers} needs {' and '.join(missing)}: embedded state "  # noqa: T201
                  "lives in one process", file=sys.stderr)
            return 2
        rest = [a for i, a in enumerate(argv) if a != "--workers" and (i == 0 or argv[i - 1] != "--workers")]
        return run_workers(settings, [a for a in rest if not a.startswith("--workers=")], args.workers)
    announce_embedded_defaults(settings, embedded_defaults(loaded.plugin_settings))
    use_fast_loop()
    try:
        asyncio.run(serve(settings, reuse_port=args.reuse_port))
    except CannotListen as exc:
        print(f"turnstile: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _cmd_check(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    path = args.file or loaded.settings.pipelines_file
    registry, pipelines = load_checked(path, loaded.pm)
    # Every step built, as start-up builds it (without I/O), so a plugin's build that fails is
    # found here too, with its FILE:LINE, not only by `serve`.
    build_steps(attrs.evolve(loaded.settings, pipelines_file=path), loaded.pm, pipelines, registry.models)
    print(f"{path}: OK ({len(pipelines.pipelines)} pipelines, {len(pipelines.subscriptions)} subscriptions)")  # noqa: T201
    return 0


def _cmd_routes(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    settings = loaded.settings
    _registry, pipelines = load_checked(settings.pipelines_file, loaded.pm)
    rows: list[tuple[str, ...]] = [("METHOD", "PATH", "PIPELINE", "STEPS")]
    for p in pipelines.pipelines:
        steps = " -> ".join(f"{s.type.name}@{settings.pipelines_file}:{s.line}" for s in p.steps)
        rows.append((p.route.method, p.route.plain_path, p.name, steps))
    for s in pipelines.subscriptions:
        steps = " -> ".join(f"{st.type.name}@{settings.pipelines_file}:{st.line}" for st in s.steps)
        rows.append(("AMQP", ",".join(s.bindings), s.name, steps))
    _print_table(rows)
    return 0


def _cmd_plugins(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    pm = loaded.pm
    try:
        registry = make_registry(pm)
    except (RegistryError, PluginLoadError) as exc:  # two plugins add one step type: said, not a traceback
        print(f"turnstile: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    rows: list[tuple[str, ...]] = [("PLUGIN", "HOOKS", "STEP TYPES", "MODELS")]
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        hooks = sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())
        steps = sorted(step for step, origin in registry.origins.items() if origin == name and ":" not in step)
        models = sorted(key.split(":", 1)[1] for key, origin in registry.origins.items()
                        if origin == name and key.startswith("model:"))
        rows.append((name, ",".join(hooks) or "-", ",".join(steps) or "-", ",".join(models) or "-"))
    for name in loaded.settings.disabled_plugins:
        rows.append((name, "(disabled)", "-", "-"))
    _print_table(rows)
    for table in (_settings_rows(pm), _resource_rows(loaded), _hookspec_rows(pm), _command_rows(pm)):
        if len(table) > 1:
            print()  # noqa: T201
            _print_table(table)
    return 0


def _settings_rows(pm: pluggy.PluginManager) -> list[tuple[str, ...]]:
    """Each plugin's variables with their defaults; never a value, a secret's default neither."""
    rows: list[tuple[str, ...]] = [("PLUGIN", "VARIABLE", "DEFAULT", "DESCRIPTION")]
    for plugin, cls in sorted(registered_settings(pm), key=lambda item: item[0]):
        for info in describe(cls):
            variable = f"{info.variable} or {info.file_variable}" if info.file_variable else info.variable
            rows.append((plugin, variable, info.default, info.description))
    return rows


def _resource_rows(loaded: _Loaded) -> list[tuple[str, ...]]:
    """What each plugin's setup_app adds, from an app prepared without I/O."""
    app = prepare_app(loaded.settings, loaded.pm)
    rows: list[tuple[str, ...]] = [("PLUGIN", "KIND", "RESOURCE", "DESCRIPTION")]
    for plugin, resources in sorted(app[resources_key].items()):
        rows.extend((plugin, entry.kind, entry.name, entry.description or "-") for entry in resources.entries)
    return rows


def _hookspec_rows(pm: pluggy.PluginManager) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("PLUGIN", "HOOK SPEC", "WHAT IT IS FOR")]
    for plugin, holder in offered_hookspecs(pm):
        for name in hookspec_names(holder):
            doc = inspect.getdoc(getattr(holder, name)) or "-"
            rows.append((plugin, name, doc.splitlines()[0]))
    return rows


def _command_rows(pm: pluggy.PluginManager) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("PLUGIN", "COMMAND", "WHAT IT DOES")]
    rows.extend((plugin, f"turnstile {command.name}", command.help) for plugin, command in plugin_commands(pm))
    return rows


def _cmd_openapi(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    from app.openapi import build_document  # noqa: PLC0415
    from app.plugin_routes import plugin_routes  # noqa: PLC0415

    registry, pipelines = load_checked(loaded.settings.pipelines_file, loaded.pm)
    document = build_document(pipelines, registry.models, routes=plugin_routes(loaded.pm))
    print(json.dumps(document, indent=2))  # noqa: T201
    return 0


def _cmd_asyncapi(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    from app.asyncapi import build_asyncapi  # noqa: PLC0415

    registry, pipelines = load_checked(loaded.settings.pipelines_file, loaded.pm)
    document = build_asyncapi(pipelines, registry.models, exchange=loaded.settings.events_exchange)
    print(json.dumps(document, indent=2, ensure_ascii=False))  # noqa: T201
    return 0


def _cmd_dataservice(args: argparse.Namespace, loaded: _Loaded, argv: list[str]) -> int:
    from app.dataservice import run_dataservice  # noqa: PLC0415
    from app.logs import setup_logging  # noqa: PLC0415

    settings = loaded.settings
    setup_logging(settings.log_level, settings.log_format)
    token = settings.data_service_token
    previous: list[str] = []
    for option, path in (("--token-file", args.token_file), ("--previous-token-file", args.previous_token_file)):
        if path is None:
            continue
        try:
            if option == "--token-file":
                token = read_token_file(path)
            else:
                previous = read_token_lines(path)
        except ValueError as exc:
            print(f"turnstile: {option} {path}: {exc}", file=sys.stderr)  # noqa: T201
            return 2
    if token is None and settings.production:
        print("turnstile: dataservice: a token is required when TURNSTILE_ENV=production (--token-file or "  # noqa: T201
              "DATA_SERVICE_TOKEN[_FILE]): without one, anyone who reaches its port reads every password hash",
              file=sys.stderr)
        return 2
    if previous and token is None:
        print("turnstile: --previous-token-file needs a current token (--token-file or DATA_SERVICE_TOKEN[_FILE])",  # noqa: T201
              file=sys.stderr)
        return 2
    run_dataservice(args.host, args.port, args.db, token=token, previous_tokens=previous)
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())  # noqa: T201


_COMMANDS: dict[str, Callable[[argparse.Namespace, _Loaded, list[str]], int]] = {
    "serve": _cmd_serve,
    "check": _cmd_check,
    "routes": _cmd_routes,
    "plugins": _cmd_plugins,
    "openapi": _cmd_openapi,
    "asyncapi": _cmd_asyncapi,
    "dataservice": _cmd_dataservice,
}
