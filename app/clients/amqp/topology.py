"""What a subscription declares on the broker, at every (re)connect.

For ``exchange="users", queue="q"``:

    users (topic, durable) --binding keys--> q (durable, dead-letters to users.dlx with key "q")
    users.dlx (direct, durable) --"q"--> q.dead (durable)
"""

from __future__ import annotations

from typing import final

import attrs
from aiormq.abc import AbstractChannel


@final
@attrs.frozen
class QueueTopology:
    """A subscription's queue, its bindings on `exchange`, and where its dead letters go."""

    exchange: str
    queue: str
    bindings: tuple[str, ...]

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    async def declare(self, channel: AbstractChannel) -> None:
        await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        await channel.exchange_declare(self.dead_letter_exchange, exchange_type="direct", durable=True)
        await channel.queue_declare(self.dead_letter_queue, durable=True)
        await channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key=self.queue)
        await channel.queue_declare(
            self.queue,
            durable=True,
            arguments={
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": self.queue,
            },
        )
        for key in self.bindings:
            await channel.queue_bind(self.queue, self.exchange, routing_key=key)
