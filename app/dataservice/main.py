"""The reference data service's app factory, and the two ways to run it.

`start_dataservice` embeds it in the caller's event loop (`turnstile serve` without
`DATA_SERVICE_URL`, with a random per-process token only the in-process client knows);
`run_dataservice` runs it on its own (`turnstile dataservice`, on 127.0.0.1 unless told
otherwise, with the token an operator gives it).
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from app.dataservice.auth import bearer_token_middleware
from app.dataservice.routes import request_middleware, setup_routes, store_key
from app.dataservice.store import UserStore
from app.protocol_errors import answer_protocol_errors_as_problems
from app.server_header import hide_server_version

log = logging.getLogger("turnstile.dataservice")

db_path_key: Final = web.AppKey("dataservice_db_path", Path)


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the one SQLite connection (schema created if missing) for the app's lifetime."""
    store = await UserStore.open(app[db_path_key])
    app[store_key] = store
    try:
        yield
    finally:
        await store.close()


def create_dataservice_app(
    db_path: str | Path, *, token: str | None = None, previous_tokens: Sequence[str] = ()
) -> web.Application:
    """The data service as an aiohttp app on the SQLite file `db_path`.

    Args:
        db_path: the database file; its parent directory is created if missing.
        token: when given, every call but `/healthz` must carry `Authorization: Bearer <token>`
            (a 401 otherwise). None leaves the service open to whoever reaches its port.
        previous_tokens: tokens still accepted beside `token` during a rotation.
    """
    hide_server_version()
    answer_protocol_errors_as_problems()
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    middlewares: list[Middleware] = [request_middleware]
    if token is not None:
        # inside: its 401 is rendered and logged
        middlewares.append(bearer_token_middleware(token, previous=previous_tokens))
    # Bodies are inflated by the routes, within the limit (app/pipeline/content_coding.py):
    # aiohttp would inflate even the unread rest of a body it drains after an early 401.
    app = web.Application(middlewares=middlewares, handler_args={"auto_decompress": False})
    app[db_path_key] = path
    app.cleanup_ctx.append(store_ctx)
    setup_routes(app)
    return app


def _base_url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_dataservice(
    db_path: str | Path, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
    previous_tokens: Sequence[str] = (),
) -> tuple[web.AppRunner, str]:
    """Start the data service in the running event loop.

    `token`, `previous_tokens`: the bearer tokens calls must carry (see `create_dataservice_app`).

    Returns:
        The runner (the caller owns it and calls `await runner.cleanup()`) and the base URL,
        e.g. `http://127.0.0.1:54321`, with the port actually bound (port 0 picks a free one).
    """
    app = create_dataservice_app(db_path, token=token, previous_tokens=previous_tokens)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, _base_url(runner.addresses[0])


def _listening_socket(host: str, port: int) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family)


def run_dataservice(
    host: str, port: int, db_path: str, *, token: str | None = None, previous_tokens: Sequence[str] = ()
) -> None:
    """Serve until SIGINT/SIGTERM, announcing the address in one line on stdout.

    The socket is bound here, before `web.run_app`, so the line names the real port even for
    port 0 (aiohttp's own banner repeats the requested one). The token is never printed.
    """
    sock = _listening_socket(host, port)
    url = _base_url(sock.getsockname())
    if token is None:
        log.warning(
            "no token (--token-file, DATA_SERVICE_TOKEN or DATA_SERVICE_TOKEN_FILE): whoever reaches %s "
            "can read and change every user", url,
        )

    def announce(_banner: str) -> None:
        guarded = "bearer token required" if token is not None else "no token"
        sys.stdout.write(f"Turnstile reference data service listening on {url} (database {db_path}; {guarded})\n")
        sys.stdout.flush()

    app = create_dataservice_app(db_path, token=token, previous_tokens=previous_tokens)
    web.run_app(app, sock=sock, print=announce, access_log=None)
