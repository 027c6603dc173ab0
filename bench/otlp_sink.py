"""A collector stand-in for the tracing scenario: accepts OTLP/HTTP exports and drops them,
so a traced Turnstile pays for making and exporting its spans, not for a collector's errors.

    python -m bench.otlp_sink --port N
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    # An empty ExportTraceServiceResponse: every span accepted.
    return web.Response(body=b"", content_type="application/x-protobuf")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", accept)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
