"""Where the tests find the real Redis and RabbitMQ, and how they stop and start them.

The test command (scripts/test.sh) starts the servers; outage tests stop and start them
through scripts/services.sh, the same script, so what they do is what an operator would do.
REDIS_URL may name a Redis Cluster (``redis+cluster://``): the test command runs the Redis
suites a second time that way, and "redis" then means the whole cluster. REDIS_CLUSTER_URL
names the test cluster for the tests that need one whatever REDIS_URL says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import coredis
import pytest

from app.clients.redis import RedisConnection

ROOT = Path(__file__).resolve().parent.parent
# ACME's example plugin package: on the tests' path (setup.cfg), never installed in the product's
# virtualenv (scripts/test.sh makes its entry point's metadata in place).
ACME_PLUGIN = ROOT / "examples" / "acme-plugin"
# What a process a test starts needs on its path: this checkout, and the example team plugin.
TEST_PYTHONPATH = os.pathsep.join((str(ROOT), str(ACME_PLUGIN)))
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_CLUSTER_URL = os.environ.get(
    "REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
)


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+cluster", "rediss+cluster")


def cluster_ports(url: str = REDIS_CLUSTER_URL) -> list[int]:
    """The ports of the nodes a cluster URL names."""
    hosts = url.split("://", 1)[1].rpartition("@")[2].split("/", 1)[0]
    return [int(item.rpartition(":")[2]) for item in hosts.split(",")]


def reachable(url: str) -> bool:
    if is_cluster(url):
        return all(_listening("127.0.0.1", port) for port in cluster_ports(url))
    parts = urlsplit(url)
    return _listening(parts.hostname or "127.0.0.1", parts.port or 0)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> str:
    """The URL when the server answers; in CI a missing server fails, locally it skips."""
    if reachable(url):
        return url
    msg = f"{what} is not reachable at {url}; run scripts/services.sh start"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _run(action: str, service: str, *args: str) -> None:
    if service == "redis" and is_cluster(REDIS_URL):
        service = "cluster"
    subprocess.run(["bash", str(SERVICES_SCRIPT), action, service, *args], check=True, timeout=120)


async def stop_service(service: str) -> None:
    """Stop `redis` (the cluster when REDIS_URL names one) or `rabbitmq` for an outage test
    (blocks a thread, not the loop)."""
    await asyncio.to_thread(_run, "stop", service)


async def start_service(service: str) -> None:
    await asyncio.to_thread(_run, "start", service)


async def stop_cluster_node(port: int) -> None:
    """Stop one master of the test cluster (nothing is saved: it comes back empty)."""
    await asyncio.to_thread(_run, "stop", "cluster-node", str(port))


async def start_cluster_node(port: int) -> None:
    await asyncio.to_thread(_run, "start", "cluster-node", str(port))


async def flush_redis(url: str) -> None:
    """Empty the database `url` names, or every master of the cluster it names."""
    if not is_cluster(url):
        client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
        async with client:
            await client.flushdb()
        return
    for port in cluster_ports(url):
        node: coredis.Redis[str] = coredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        async with node:
            if (await node.role())[0] == "master":
                await node.flushdb()


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[coredis.Redis[str]]:
    """A client of `url` (a server or a cluster) for a test to look into Redis with."""
    connection = RedisConnection(url)
    await connection.start()
    try:
        yield connection.client
    finally:
        await connection.stop()
