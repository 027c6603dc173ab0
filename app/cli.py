"""`turnstile` (and `python -m app`): serve, check, routes, plugins, openapi, asyncapi, create-admin, dataservice."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from app.main import make_settings_plugin_manager
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked, make_registry
from app.settings import Settings, SettingsError, load_settings, read_token_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnstile", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--pipelines", type=Path, help="pipelines file (default: PIPELINES_FILE)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    check = commands.add_parser("check", help="validate a pipelines file")
    check.add_argument("file", nargs="?", type=Path)

    routes = commands.add_parser("routes", help="each route, its pipeline and its steps")
    routes.add_argument("--pipelines", type=Path)
    commands.add_parser("plugins", help="installed plugins, their hooks and step types")
    openapi = commands.add_parser("openapi", help="print the OpenAPI document")
    openapi.add_argument("--pipelines", type=Path)
    asyncapi = commands.add_parser("asyncapi", help="print the AsyncAPI document of the events")
    asyncapi.add_argument("--pipelines", type=Path)

    admin = commands.add_parser("create-admin", help="create or promote an admin")
    admin.add_argument("--email", required=True)

    dataservice = commands.add_parser("dataservice", help="run the reference data service")
    dataservice.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    dataservice.add_argument("--port", type=int, default=8081)
    dataservice.add_argument("--db", default="var/data.sqlite3")
    dataservice.add_argument(
        "--token-file", type=Path,
        help="file holding the bearer token every call must carry (default: DATA_SERVICE_TOKEN[_FILE])",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    changes = {}
    if getattr(args, "pipelines", None):
        changes["pipelines_file"] = args.pipelines
    if getattr(args, "host", None) and args.command == "serve":
        changes["host"] = args.host
    if getattr(args, "port", None) and args.command == "serve":
        changes["port"] = args.port
    return attrs.evolve(settings, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        return _COMMANDS[args.command](args, settings, argv)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"turnstile: {problem}", file=sys.stderr)  # noqa: T201
        return 2
    except PipelineFileError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)  # noqa: T201
        return 1


def _cmd_serve(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    from app.logs import setup_logging  # noqa: PLC0415  # only the server needs logging set up
    from app.serve import run_workers, serve, use_fast_loop  # noqa: PLC0415
    from app.settings import announce_embedded_defaults  # noqa: PLC0415

    setup_logging(settings.log_level, settings.log_format)
    if args.workers > 1:
        missing = [name for name, value in (("DATA_SERVICE_URL", settings.data_service_url),
                                            ("REDIS_URL", settings.redis_url)) if value is None]
        if missing:
            print(f"turnstile: --workers {args.workers} needs {' and '.join(missing)}: embedded state "  # noqa: T201
                  "lives in one process", file=sys.stderr)
            return 2
        rest = [a for i, a in enumerate(argv) if a != "--workers" and (i == 0 or argv[i - 1] != "--workers")]
        return run_workers(settings, [a for a in rest if not a.startswith("--workers=")], args.workers)
    announce_embedded_defaults(settings)
    use_fast_loop()
    asyncio.run(serve(settings, reuse_port=args.reuse_port))
    return 0


def _cmd_check(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    path = args.file or settings.pipelines_file
    pm = make_settings_plugin_manager(settings)
    _registry, pipelines = load_checked(path, pm)
    print(f"{path}: OK ({len(pipelines.pipelines)} pipelines, {len(pipelines.subscriptions)} subscriptions)")  # noqa: T201
    return 0


def _cmd_routes(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    pm = make_settings_plugin_manager(settings)
    _registry, pipelines = load_checked(settings.pipelines_file, pm)
    rows: list[tuple[str, ...]] = [("METHOD", "PATH", "PIPELINE", "STEPS")]
    for p in pipelines.pipelines:
        steps = " -> ".join(f"{s.type.name}@{settings.pipelines_file}:{s.line}" for s in p.steps)
        rows.append((p.route.method, p.route.plain_path, p.name, steps))
    for s in pipelines.subscriptions:
        steps = " -> ".join(f"{st.type.name}@{settings.pipelines_file}:{st.line}" for st in s.steps)
        rows.append(("AMQP", ",".join(s.bindings), s.name, steps))
    _print_table(rows)
    return 0


def _cmd_plugins(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    pm = make_settings_plugin_manager(settings)
    registry = make_registry(pm)
    rows: list[tuple[str, ...]] = [("PLUGIN", "HOOKS", "STEP TYPES", "MODELS")]
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        hooks = sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())
        steps = sorted(step for step, origin in registry.origins.items() if origin == name and ":" not in step)
        models = sorted(key.split(":", 1)[1] for key, origin in registry.origins.items()
                        if origin == name and key.startswith("model:"))
        rows.append((name, ",".join(hooks) or "-", ",".join(steps) or "-", ",".join(models) or "-"))
    for name in settings.disabled_plugins:
        rows.append((name, "(disabled)", "-", "-"))
    _print_table(rows)
    return 0


def _cmd_openapi(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    from app.openapi import build_document  # noqa: PLC0415

    pm = make_settings_plugin_manager(settings)
    registry, pipelines = load_checked(settings.pipelines_file, pm)
    print(json.dumps(build_document(pipelines, registry.models), indent=2))  # noqa: T201
    return 0


def _cmd_asyncapi(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    from app.asyncapi import build_asyncapi  # noqa: PLC0415

    pm = make_settings_plugin_manager(settings)
    registry, pipelines = load_checked(settings.pipelines_file, pm)
    document = build_asyncapi(pipelines, registry.models, exchange=settings.events_exchange)
    print(json.dumps(document, indent=2, ensure_ascii=False))  # noqa: T201
    return 0


def _cmd_create_admin(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    from app.admin import create_admin_command  # noqa: PLC0415  # talks to the data service

    return create_admin_command(settings, args.email)


def _cmd_dataservice(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    from app.dataservice import run_dataservice  # noqa: PLC0415
    from app.logs import setup_logging  # noqa: PLC0415

    setup_logging(settings.log_level, settings.log_format)
    token = settings.data_service_token
    if args.token_file is not None:
        try:
            token = read_token_file(args.token_file)
        except ValueError as exc:
            print(f"turnstile: --token-file {args.token_file}: {exc}", file=sys.stderr)  # noqa: T201
            return 2
    run_dataservice(args.host, args.port, args.db, token=token)
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())  # noqa: T201


_COMMANDS = {
    "serve": _cmd_serve,
    "check": _cmd_check,
    "routes": _cmd_routes,
    "plugins": _cmd_plugins,
    "openapi": _cmd_openapi,
    "asyncapi": _cmd_asyncapi,
    "create-admin": _cmd_create_admin,
    "dataservice": _cmd_dataservice,
}

