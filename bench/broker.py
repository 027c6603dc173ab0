"""The run's own names on the shared RabbitMQ, declared at the start and deleted at the end."""

from __future__ import annotations

import asyncio
import secrets

import aiormq
import attrs


@attrs.frozen
class AmqpNames:
    """Exchange and queues of one run. Unique per run: the broker is shared, and two runs at
    once (or a run beside the test suite) must not consume each other's events nor delete
    each other's queues at the end."""

    exchange: str
    events_queue: str
    subscription_queue: str
    baseline_queue: str  # the consuming baseline's shared queue (bench/baseline_consumers.py)

    @classmethod
    def unique(cls) -> AmqpNames:
        run = secrets.token_hex(4)
        return cls(f"bench.{run}.users", f"bench.{run}.events", f"bench.{run}.user-changes",
                   f"bench.{run}.baseline-changes")

    @property
    def queues(self) -> tuple[str, ...]:
        # Turnstile's consumers declare "<queue>.dead" and "<exchange>.dlx" for their dead
        # letters: the shared subscription's, and the each-instance one's (the default pipelines'
        # "<queue>.instance", whose own queue is exclusive and goes with its connection).
        return (self.events_queue, self.subscription_queue, f"{self.subscription_queue}.dead",
                f"{self.subscription_queue}.instance.dead", self.baseline_queue)

    @property
    def exchanges(self) -> tuple[str, ...]:
        return (self.exchange, f"{self.exchange}.dlx")


async def _setup(url: str, names: AmqpNames) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        # Every event is routable, as with real consumers, and is stored as theirs would be:
        # durable, so every confirm waits for the disk (for Turnstile's events and the
        # baseline's alike) and the queue outlives a broker restart during the run. It keeps
        # only the newest, and disappears an hour after a run that died before its clean-up.
        await channel.exchange_declare(names.exchange, exchange_type="topic", durable=True)
        await channel.queue_declare(
            names.events_queue, durable=True,
            arguments={"x-max-length": 1000, "x-overflow": "drop-head", "x-expires": 3_600_000},
        )
        await channel.queue_bind(names.events_queue, names.exchange, routing_key="#")
    finally:
        await connection.close()


async def _teardown(url: str, names: AmqpNames) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for queue in names.queues:
            await channel.queue_delete(queue)
        for exchange in names.exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def setup(url: str, names: AmqpNames) -> None:
    asyncio.run(_setup(url, names))


def teardown(url: str, names: AmqpNames) -> None:
    asyncio.run(_teardown(url, names))
