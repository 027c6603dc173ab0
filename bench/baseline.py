"""The baseline: a hand-written aiohttp app doing the work of Turnstile's cached read, no pipeline.

Per request: verify the bearer JWT with PyJWT (HS256 pinned, the same issuer, audience and
required claims, an access token), GET ``turnstile:user:{id}`` from Redis with coredis (the
key Turnstile's cache step uses), and answer the stored JSON bytes. No token cache, no
revocation check, no middlewares, no metrics, no log line.

    python -m bench.baseline --port 8090 --redis-url redis://127.0.0.1:6379/12
    (secret, issuer and audience from JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import coredis
import jwt
from aiohttp import web

_REQUIRED: Final = ["sub", "roles", "exp", "iat", "jti", "iss", "aud", "type"]
_redis_key: Final = web.AppKey("redis", coredis.Redis)  # type: ignore[type-abstract]
_PROBLEM: Final = "application/problem+json"


def _problem(status: int, title: str) -> web.Response:
    return web.Response(status=status, body=b'{"title": "%s"}' % title.encode(), content_type=_PROBLEM)


def make_app(redis_url: str, secret: str, issuer: str, audience: str) -> web.Application:
    async def get_user(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            return _problem(401, "Unauthorized")
        try:
            claims: dict[str, Any] = jwt.decode(
                header[7:], secret, algorithms=["HS256"], audience=audience, issuer=issuer,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError:
            return _problem(401, "Unauthorized")
        if claims["type"] != "access" or claims["exp"] <= time.time():
            return _problem(401, "Unauthorized")
        user_id = request.match_info["id"]
        if "admin" not in claims["roles"] and claims["sub"] != user_id:
            return _problem(403, "Forbidden")
        cached = await request.app[_redis_key].get(f"turnstile:user:{user_id}")
        if cached is None:
            return _problem(404, "Not Found")
        return web.Response(body=cached, content_type="application/json")

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url, decode_responses=False)
        async with client:
            app[_redis_key] = client
            yield

    app = web.Application()
    app.router.add_get("/api/v1/users/{id:\\d+}", get_user)
    app.router.add_get("/healthz", lambda _: asyncio.sleep(0, web.json_response({"status": "ok"})))
    app.cleanup_ctx.append(redis_ctx)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415  # as Turnstile's serve does

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = make_app(
        args.redis_url,
        os.environ["JWT_SECRET"],
        os.environ.get("JWT_ISSUER", "turnstile"),
        os.environ.get("JWT_AUDIENCE", "turnstile-api"),
    )
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
