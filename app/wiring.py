"""The core's clients (data service, Redis, publisher), made from settings.

Objects are created here without I/O, so steps can capture them at build time; each is
started and stopped by a cleanup_ctx (in dependency order) and reports to /readyz.

Which checks make the service not ready, and why:
- data_service: "open" circuit → not ready (every data route would answer 503 anyway).
- redis: "down", or "degraded" when some masters of a cluster do not answer → still ready:
  the cache bypasses, token state and rate limits fail as documented, the outbox falls back;
  taking every pod out would turn a degraded service into an outage. Its details name the
  topology (standalone, sentinel, cluster) and each node checked.
- rabbitmq: the publisher's state ("connected", "connecting", ...) → still ready: events
  wait in the durable outbox.
- outbox: how many events wait for the broker ("empty", "3 waiting", "unknown") → still
  ready: a full outbox is the broker's outage, not this pod's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from typing import Final

from aiohttp import web

from app.clients.amqp import AmqpPublisher, LogFilePublisher, Publisher
from app.clients.dataservice import DataServiceClient, DataServiceOptions
from app.clients.outbox import DEFAULT_FILE_NAME, FileOutbox, Outbox, RedisOutbox, SpilloverOutbox
from app.clients.redis import RedisConnection
from app.keys import data_service_key, publisher_key, readiness_key, redis_key, settings_key
from app.readiness import Check
from app.settings import Settings
from app.untraced import untraced

log = logging.getLogger("turnstile.wiring")

# A call the data service answers 200 or 404 (contract §7), for the probe of an idle client.
PROBE_PATH: Final = "/api/v1/users/0"
PROBE_EVERY_S: Final = 1.0  # how often the probe looks; it calls only when no verdict is fresh (5 s)
FIRST_PROBE_WAIT_S: Final = 2.0

# Where the embedded data service is reached; the real port is set when it listens.
_EMBEDDED_PLACEHOLDER_URL = "http://127.0.0.1"
PUBLISHER_FLUSH_DEADLINE_S = 5.0


def setup_clients(app: web.Application, settings: Settings, *, mirrored: Iterable[str] = ()) -> None:
    """Create every client and register its start/stop and its readiness check.

    mirrored: Redis key prefixes read on (nearly) every request, kept in process memory
    while Redis's invalidation pushes flow (app/clients/tracking.py); the plugins name them
    (`register_mirrored_keys`), since the keys are theirs.
    """
    prefixes = _disjoint(mirrored) if settings.redis_client_tracking else ()
    redis = (
        RedisConnection(settings.redis_url, mirror_prefixes=prefixes, mirror_max_entries=settings.cache_max_entries)
        if settings.redis_url
        else None
    )
    app[redis_key] = redis
    app[data_service_key] = DataServiceClient(
        DataServiceOptions(
            base_url=settings.data_service_url or _EMBEDDED_PLACEHOLDER_URL,
            connect_timeout_s=settings.data_service_connect_timeout_s,
            total_timeout_s=settings.data_service_timeout_s,
            retries=settings.data_service_retries,
            breaker_failures=settings.breaker_failures,
            breaker_cooldown_s=settings.breaker_cooldown_s,
            token=data_service_token(settings),
        )
    )
    outbox = _make_outbox(settings, redis)
    app[publisher_key] = _make_publisher(settings, outbox)
    if isinstance(outbox, SpilloverOutbox):
        spill = outbox

        async def release_spill_file(_app: web.Application) -> None:  # after the publisher stopped
            spill.close()

        app.on_cleanup.append(release_spill_file)

    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(data_service_ctx)
    app.cleanup_ctx.append(publisher_ctx)
    readiness = app[readiness_key]
    readiness.add_check("data_service", _data_service_check(app[data_service_key], settings))
    readiness.add_check("redis", _redis_check(redis))
    if redis is not None:
        readiness.add_detail("redis", lambda: {"topology": redis.topology, **redis.health.details()})
    readiness.add_check("rabbitmq", _publisher_check(app[publisher_key]))
    if outbox is not None:
        readiness.add_check("outbox", _outbox_check(outbox))


def _disjoint(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The prefixes without those another one already covers (Redis refuses tracking two
    prefixes of which one starts the other), sorted."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not any(prefix.startswith(shorter) for shorter in kept):
            kept.append(prefix)
    return tuple(kept)


def data_service_token(settings: Settings) -> str | None:
    """The credential for data-service calls: the configured one, or for the embedded data
    service a fresh random token that only this process's client ever holds (its port is in
    the log, so any local process could otherwise read every password hash through it)."""
    if settings.data_service_url is None:
        return secrets.token_urlsafe(32)
    return settings.data_service_token


def _make_outbox(
    settings: Settings, redis: RedisConnection | None, file_name: str = DEFAULT_FILE_NAME
) -> Outbox | None:
    if settings.rabbitmq_url is None:
        return None  # embedded: events are written at once, nothing ever waits
    if redis is None:
        return FileOutbox(settings.var_dir, file_name)
    # Redis and the broker down together must not leave an event only in the log.
    return SpilloverOutbox(RedisOutbox(redis), settings.var_dir)


def make_publisher(
    settings: Settings, redis: RedisConnection | None, *, outbox_file: str = DEFAULT_FILE_NAME
) -> Publisher:
    """The publisher `settings` ask for: RabbitMQ's, whose events wait in the Redis outbox (or
    without Redis in `outbox_file`, which no other process may share) while the broker cannot
    take them, or without a broker the events file."""
    return _make_publisher(settings, _make_outbox(settings, redis, outbox_file))


def _make_publisher(settings: Settings, outbox: Outbox | None) -> Publisher:
    if settings.rabbitmq_url is None or outbox is None:
        return LogFilePublisher(settings.var_dir / "events.jsonl")
    return AmqpPublisher(settings.rabbitmq_url, settings.events_exchange, outbox)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    redis = app[redis_key]
    if redis is None:
        yield
        return
    await redis.start()
    # While the app serves: a Redis back with older data is noticed within a second (§9a).
    async with redis.rollbacks.watching():
        yield
    await redis.stop()


async def data_service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    client = app[data_service_key]
    runner = None
    if settings.data_service_url is None:
        from app.dataservice import start_dataservice  # noqa: PLC0415  # embedded only

        runner, url = await start_dataservice(settings.var_dir / "data.sqlite3", token=client.options.token)
        log.info("embedded data service listening on %s (bearer token required)", url)
        await client.start(base_url=url)
    else:
        await client.start()
    # The first probe before the app serves (bounded: a blackholed address must not hold the
    # start-up), so /readyz knows at once whether the data service answers.
    with contextlib.suppress(TimeoutError), untraced():
        await asyncio.wait_for(client.probe(PROBE_PATH), FIRST_PROBE_WAIT_S)
    probing = asyncio.create_task(_probe_while_idle(client), name="data service probe")
    yield
    probing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probing
    await client.close()
    if runner is not None:
        await runner.cleanup()


async def _probe_while_idle(client: DataServiceClient) -> None:
    """Probe the data service whenever no call told whether it answers (app/clients/reachability.py)."""
    with untraced():
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            try:
                await client.probe(PROBE_PATH)
            except Exception:  # the probe must outlive any surprise; the client logs the outage itself
                log.exception("the data service probe failed; it goes on")


async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    publisher = app[publisher_key]
    await publisher.start()
    yield
    await publisher.stop(PUBLISHER_FLUSH_DEADLINE_S)


def _data_service_check(client: DataServiceClient, settings: Settings) -> Check:
    async def check() -> tuple[str, bool]:
        ok = await client.ready()
        state = client.breaker_state
        if state == "open":
            return state, False
        reached = client.reachability.state
        if reached != "ok":  # never reached yet, unreachable, or our token refused: not ready
            return reached, False
        if state != "closed":  # half-open, though its last call or probe was answered
            return state, ok
        return ("embedded" if settings.data_service_url is None else "ok"), ok

    return check


def _redis_check(redis: RedisConnection | None) -> Check:
    async def check() -> tuple[str, bool]:
        if redis is None:
            return "embedded", True
        return redis.health.state, True

    return check


def _outbox_check(outbox: Outbox) -> Check:
    async def check() -> tuple[str, bool]:
        try:
            depth = await outbox.depth()
        except Exception:  # the outbox's own store (Redis, disk) is what failed
            return "unknown", True
        return ("empty" if depth == 0 else f"{depth} waiting"), True

    return check


def _publisher_check(publisher: Publisher) -> Check:
    async def check() -> tuple[str, bool]:
        return publisher.state, True

    return check
