"""The baseline: hand-written aiohttp handlers doing the work of Turnstile's benchmarked routes,
no pipeline; and two reference handlers doing less than any real route may.

Baseline (what one would write by hand for the same job, with the same dependencies):

- ``GET /api/v1/users/{id}``, cache-aside: verify the bearer JWT with PyJWT (HS256 pinned, the
  same issuer, audience and required claims, an access token; self or admin), GET
  ``baseline:user:{id}`` from Redis with coredis; a hit answers the stored bytes (the cached
  read); a miss GETs the user from the data service over one pooled aiohttp ClientSession
  (with the data service's bearer token), keeps the public fields, SETs them with a TTL and
  answers (the uncached read).
- ``PATCH /api/v1/users/{id}`` (``{"full_name": …}``, what the benchmark sends): verify the JWT,
  PATCH the data service, DEL the cache key, publish one persistent ``user.updated`` message
  and wait for the broker's confirm (aiormq), answer the user.

No token cache, no revocation check, no outbox, no middlewares, no metrics, no log line.

References, no auth at all (what the cached read is compared to, not something to match):

- ``GET /reference/redis/users/{id}``: one Redis GET of the baseline's cache entry, answered.
- ``GET /reference/dict/users/{id}``: the same bytes from a process dict (filled from Redis on
  the first read): aiohttp's own ceiling for this answer.

The cache keys live under ``baseline:``, not ``turnstile:``: Turnstile's local mirror has Redis
push an invalidation to it for every write under its prefixes, and the baseline's writes must
not cost Turnstile (pinned to the same core) anything. For the same reason the events go to the
run's exchange with the routing key ``baseline.user.updated``: routable (the run's events queue
is bound to ``#``), but no Turnstile subscription consumes it.

    python -m bench.baseline --port 8090 --redis-url redis://127.0.0.1:6379/12 \\
        --data-url http://127.0.0.1:8091 --amqp-url amqp://guest:guest@127.0.0.1:5672/ \\
        --exchange bench.users
    (JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE; the data service's token in DATA_SERVICE_TOKEN)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import aiormq
import attrs
import coredis
import jwt
import orjson
from aiohttp import web
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

_REQUIRED: Final = ["sub", "roles", "exp", "iat", "jti", "iss", "aud", "type"]
_PUBLIC: Final = frozenset({"id", "email", "full_name", "is_active", "roles", "created_at", "updated_at"})
_PROBLEM: Final = "application/problem+json"
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
CACHE_PREFIX: Final = "baseline:user:"
CACHE_TTL_S: Final = 3600  # as the default pipelines' cache step
ROUTING_KEY: Final = "baseline.user.updated"

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
_redis_key: Final = web.AppKey("redis", coredis.Redis)
_session_key: Final = web.AppKey("session", aiohttp.ClientSession)


@attrs.frozen
class Config:
    redis_url: str
    data_url: str
    data_token: str
    amqp_url: str
    exchange: str
    secret: str
    issuer: str = "turnstile"
    audience: str = "turnstile-api"


class Refused(Exception):
    """An answer other than success, as (status, title)."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title

    def response(self) -> web.Response:
        body = b'{"title": "%s", "status": %d}' % (self.title.encode(), self.status)
        return web.Response(status=self.status, body=body, content_type=_PROBLEM)


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _public(raw: bytes) -> dict[str, Any]:
    user: dict[str, Any] = orjson.loads(raw)
    return {key: value for key, value in user.items() if key in _PUBLIC}


def _upstream(status: int) -> None:
    if status == 404:
        raise Refused(404, "Not Found")
    if status != 200:
        raise Refused(502, "Bad Gateway")


class Handlers:
    """The routes' handlers; each request reaches its clients through the app."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_users = f"{config.data_url.rstrip('/')}/api/v1/users/"
        self.memo: dict[str, bytes] = {}  # the ceiling's process dict

    def authorize(self, request: web.Request, user_id: str) -> None:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            raise Refused(401, "Unauthorized")
        try:
            claims: dict[str, Any] = jwt.decode(
                header[7:], self.config.secret, algorithms=["HS256"], audience=self.config.audience,
                issuer=self.config.issuer, options={"require": _REQUIRED},
            )
        except jwt.PyJWTError:
            raise Refused(401, "Unauthorized") from None
        if claims["type"] != "access" or claims["exp"] <= time.time():
            raise Refused(401, "Unauthorized")
        if "admin" not in claims["roles"] and claims["sub"] != user_id:
            raise Refused(403, "Forbidden")

    async def get_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        try:
            self.authorize(request, user_id)
            redis = request.app[_redis_key]
            key = CACHE_PREFIX + user_id
            cached = await redis.get(key)
            if cached is not None:
                return _json(cached)
            async with request.app[_session_key].get(self.data_users + user_id) as upstream:
                _upstream(upstream.status)
                body = orjson.dumps(_public(await upstream.read()))
            await redis.set(key, body, ex=CACHE_TTL_S)
            return _json(body)
        except Refused as refused:
            return refused.response()

    async def patch_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        try:
            self.authorize(request, user_id)
            changes = orjson.dumps(_changes(await request.read()))
            async with request.app[_session_key].patch(self.data_users + user_id, data=changes,
                                                       headers=_JSON_HEADERS) as upstream:
                _upstream(upstream.status)
                user = _public(await upstream.read())
            await request.app[_redis_key].delete([CACHE_PREFIX + user_id])
            await request.app[broker_key].publish(user)
            return _json(orjson.dumps(user))
        except Refused as refused:
            return refused.response()

    async def reference_dict(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        body = self.memo.get(user_id)
        if body is None:
            body = await request.app[_redis_key].get(CACHE_PREFIX + user_id)
            if body is None:
                return Refused(404, "Not Found").response()
            self.memo[user_id] = body
        return _json(body)

    async def reference_redis(self, request: web.Request) -> web.Response:
        body = await request.app[_redis_key].get(CACHE_PREFIX + request.match_info["id"])
        return Refused(404, "Not Found").response() if body is None else _json(body)


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(config: Config) -> web.Application:
    handlers = Handlers(config)
    app = web.Application()
    app.router.add_get("/api/v1/users/{id:\\d+}", handlers.get_user)
    app.router.add_patch("/api/v1/users/{id:\\d+}", handlers.patch_user)
    app.router.add_get("/reference/dict/users/{id:\\d+}", handlers.reference_dict)
    app.router.add_get("/reference/redis/users/{id:\\d+}", handlers.reference_redis)
    app.router.add_get("/healthz", _healthz)
    app.cleanup_ctx.extend([_redis_ctx(config), _session_ctx(config), _amqp_ctx(config)])
    return app


def _changes(raw: bytes) -> dict[str, Any]:
    """The body the benchmark sends, checked: `{"full_name": str | null}` (at most 200 characters)."""
    try:
        changes = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(400, "Bad Request") from None
    if not isinstance(changes, dict) or set(changes) != {"full_name"}:
        raise Refused(422, "Unprocessable Content")
    name = changes["full_name"]
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise Refused(422, "Unprocessable Content")
    return changes


class Broker:
    """One AMQP connection with a confirming channel, opened again on the next publish after
    it broke (the broker is shared: someone may restart it during a run)."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                await self.close()
                self._connection = await aiormq.connect(self.url)
                self._channel = await self._connection.channel(publisher_confirms=True)
            return self._channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def publish(self, user: dict[str, Any]) -> None:
        """One persistent `user.updated`-shaped message; returns once the broker confirmed it."""
        message_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        body = orjson.dumps({
            "id": message_id, "type": "user.updated", "occurred_at": now.isoformat(),
            "request_id": uuid.uuid4().hex, "data": user,
        })
        properties = Basic.Properties(content_type="application/json", delivery_mode=2, message_id=message_id,
                                      timestamp=now, app_id="baseline")
        try:
            channel = await self.open()
            confirm = await channel.basic_publish(body, exchange=self.exchange, routing_key=ROUTING_KEY,
                                                  properties=properties, mandatory=True)
        except (aiormq.AMQPError, OSError):
            raise Refused(503, "Service Unavailable") from None
        if not isinstance(confirm, Basic.Ack):
            raise Refused(503, "Service Unavailable")


broker_key: Final = web.AppKey("broker", Broker)


def _redis_ctx(config: Config) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(config.redis_url, decode_responses=False)
        # coredis must be entered and left in one task; a cleanup context's two halves may run
        # in two (they do under pytest-aiohttp), so one task owns the client for the app's life.
        ready, stop = asyncio.Event(), asyncio.Event()

        async def own() -> None:
            async with client:
                ready.set()
                await stop.wait()

        owner = asyncio.create_task(own())
        await asyncio.wait([owner, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if owner.done():
            owner.result()  # it could not connect: say why
        app[_redis_key] = client
        try:
            yield
        finally:
            stop.set()
            await owner

    return ctx


def _session_ctx(config: Config) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # One pooled session for the process, as Turnstile's data-service client keeps.
        timeout = aiohttp.ClientTimeout(total=5.0, sock_connect=1.0)
        headers = {"Authorization": f"Bearer {config.data_token}"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            app[_session_key] = session
            yield

    return ctx


def _amqp_ctx(config: Config) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        broker = Broker(config.amqp_url, config.exchange)
        await broker.open()
        app[broker_key] = broker
        try:
            yield
        finally:
            await broker.close()

    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--data-url", required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415  # as Turnstile's serve does

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    config = Config(
        redis_url=args.redis_url,
        data_url=args.data_url,
        data_token=os.environ["DATA_SERVICE_TOKEN"],
        amqp_url=args.amqp_url,
        exchange=args.exchange,
        secret=os.environ["JWT_SECRET"],
        issuer=os.environ.get("JWT_ISSUER", "turnstile"),
        audience=os.environ.get("JWT_AUDIENCE", "turnstile-api"),
    )
    web.run_app(make_app(config), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
