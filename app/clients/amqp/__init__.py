"""RabbitMQ through aiormq: publishing domain events and consuming subscriptions (contract §9).

- `link`: `BrokerLink`, the one connection-and-backoff piece the publisher and every
  consumer hold (aiormq does not reconnect by itself).
- `publishing`: the `Publisher` protocol and its outcomes; `metrics`: the event metrics.
- `publisher`: `AmqpPublisher`, the actor that owns the publishing channel, with its
  `mailbox`, its `confirms` and its use of the durable outbox (`outboxing`).
- `logfile`: `LogFilePublisher`, the embedded default without a broker.
- `consumer`: `Consumer`, one subscription's actor, with its `topology` and `retries`.
"""

from app.clients.amqp.consumer import Consumer, EventHandler
from app.clients.amqp.logfile import LogFilePublisher
from app.clients.amqp.publisher import AmqpPublisher
from app.clients.amqp.publishing import Publisher, PublishOutcome

__all__ = ["AmqpPublisher", "Consumer", "EventHandler", "LogFilePublisher", "PublishOutcome", "Publisher"]
