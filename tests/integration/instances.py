"""Several Turnstile instances as the chart deploys them: each its own app (its own clients,
plugin manager, token cache and process-local records: nothing shared in memory but the
Prometheus registry), all sharing one Redis (the test cluster unless told otherwise), one
broker exchange and one data service. Helpers to look at where a key lives on the cluster and
which session a token belongs to.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from coredis._utils import hash_slot

from app.pipeline.subscriptions import consumers_key
from tests.integration.amqp_capture import eventually, wait_connected
from tests.integration.conftest import Client, StackFactory
from tests.services import redis_client

AUTH_PREFIX = "turnstile:auth:"
CACHE_PREFIX = ""  # the cache keys are the pipelines file's own (contract §8: user:{id})


async def start_instances(stack: StackFactory, *redis_urls: str, broker: str, **settings: Any) -> list[Client]:
    """An instance per Redis URL (the same URL for instances that share it directly), each with
    its publisher connected and every subscription consuming."""
    clients = [await stack(redis_url=url, rabbitmq_url=broker, **settings) for url in redis_urls]
    for client in clients:
        await until_ready(client)
    return clients


async def until_ready(client: Client) -> None:
    await wait_connected(client)

    async def consuming() -> bool:
        return all(consumer.state == "connected" for consumer in client.app[consumers_key])

    await eventually(consuming, 30, "every subscription consuming")


async def master_of(cluster_url: str, key: str) -> int:
    """The port of the cluster master that holds `key`."""
    async with redis_client(cluster_url) as client:
        layout = client.connection_pool.cluster_layout  # type: ignore[attr-defined]
        return int(layout.node_for_slot(hash_slot(key.encode())).port)


def family_of(tokens: dict[str, Any]) -> str:
    """The session (refresh-token family) a token pair belongs to, read from its JWT."""
    payload = tokens["access_token"].split(".")[1]
    claims: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    family: str = claims["fam"]
    return family
