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

With ``--consume-events QUEUE`` the baseline also consumes its own events as Turnstile's default
subscriptions consume Turnstile's (bench/baseline_consumers.py): the PATCH reference that does
the same broker work. Such a baseline publishes under ``--routing-key`` (another key than the
plain baseline's), so that it consumes only its own events.

    python -m bench.baseline --port 8090 --redis-url redis://127.0.0.1:6379/12 \\
        --data-url http://127.0.0.1:8091 --amqp-url amqp://guest:guest@127.0.0.1:5672/ \\
        --exchange bench.users [--routing-key KEY] [--consume-events QUEUE]
    (JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE; the data service's token in DATA_SERVICE_TOKEN)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import attrs
import jwt
import orjson
from aiohttp import web
from pamqp.commands import Basic

from bench.baseline_clients import (
    Broker,
    PublishFailed,
    amqp_ctx,
    broker_key,
    redis_ctx,
    redis_key,
    session_ctx,
    session_key,
)
from bench.baseline_consumers import consumers_ctx

_REQUIRED: Final = ["sub", "roles", "exp", "iat", "jti", "iss", "aud", "type"]
_PUBLIC: Final = frozenset({"id", "email", "full_name", "is_active", "roles", "created_at", "updated_at"})
_PROBLEM: Final = "application/problem+json"
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
CACHE_PREFIX: Final = "baseline:user:"
CACHE_TTL_S: Final = 3600  # as the default pipelines' cache step
ROUTING_KEY: Final = "baseline.user.updated"



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
    routing_key: str = ROUTING_KEY
    consume_events: str | None = None  # the shared queue's name, when consuming its own events


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
            redis = request.app[redis_key]
            key = CACHE_PREFIX + user_id
            cached = await redis.get(key)
            if cached is not None:
                return _json(cached)
            async with request.app[session_key].get(self.data_users + user_id) as upstream:
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
            async with request.app[session_key].patch(self.data_users + user_id, data=changes,
                                                       headers=_JSON_HEADERS) as upstream:
                _upstream(upstream.status)
                user = _public(await upstream.read())
            await request.app[redis_key].delete([CACHE_PREFIX + user_id])
            await _publish(request.app[broker_key], self.config.exchange, self.config.routing_key, user)
            return _json(orjson.dumps(user))
        except Refused as refused:
            return refused.response()

    async def reference_dict(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        body = self.memo.get(user_id)
        if body is None:
            body = await request.app[redis_key].get(CACHE_PREFIX + user_id)
            if body is None:
                return Refused(404, "Not Found").response()
            self.memo[user_id] = body
        return _json(body)

    async def reference_redis(self, request: web.Request) -> web.Response:
        body = await request.app[redis_key].get(CACHE_PREFIX + request.match_info["id"])
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
    app.cleanup_ctx.extend([redis_ctx(config.redis_url), session_ctx(config.data_token), amqp_ctx(config.amqp_url)])
    if config.consume_events is not None:
        app.cleanup_ctx.append(consumers_ctx(config.amqp_url, config.exchange, config.routing_key,
                                             config.consume_events))
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


async def _publish(broker: Broker, exchange: str, routing_key: str, user: dict[str, Any]) -> None:
    """One persistent message shaped like Turnstile's `user.updated` event, confirmed."""
    message_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    body = orjson.dumps({
        "id": message_id, "type": "user.updated", "occurred_at": now.isoformat(),
        "request_id": uuid.uuid4().hex, "data": user,
    })
    properties = Basic.Properties(content_type="application/json", delivery_mode=2, message_id=message_id,
                                  timestamp=now, app_id="baseline")
    try:
        await broker.publish(body, exchange=exchange, routing_key=routing_key, properties=properties)
    except PublishFailed:
        raise Refused(503, "Service Unavailable") from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--data-url", required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--routing-key", default=ROUTING_KEY)
    parser.add_argument("--consume-events", metavar="QUEUE")
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
        routing_key=args.routing_key,
        consume_events=args.consume_events,
        secret=os.environ["JWT_SECRET"],
        issuer=os.environ.get("JWT_ISSUER", "turnstile"),
        audience=os.environ.get("JWT_AUDIENCE", "turnstile-api"),
    )
    web.run_app(make_app(config), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
