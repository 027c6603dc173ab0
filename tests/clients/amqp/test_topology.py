"""What each kind of subscription queue is declared with (the declarations themselves run
against the broker in test_consumer.py)."""

from __future__ import annotations

import pytest

from app.clients.amqp.topology import QueueTopology, QueueType, instance_queue_name


def test_a_shared_queue_is_a_quorum_queue_counting_deliveries() -> None:
    topology = QueueTopology("users", "q", ("user.updated",), delivery_limit=4)
    assert topology.queue == "q"
    assert topology.counts_deliveries
    assert topology.arguments() == {
        "x-dead-letter-exchange": "users.dlx", "x-dead-letter-routing-key": "q",
        "x-queue-type": "quorum", "x-delivery-limit": 4,
    }
    assert (topology.dead_letter_exchange, topology.dead_letter_queue) == ("users.dlx", "q.dead")


def test_a_classic_shared_queue_counts_nothing() -> None:
    topology = QueueTopology("users", "q", ("user.updated",), queue_type="classic")
    assert not topology.counts_deliveries
    assert topology.arguments() == {"x-dead-letter-exchange": "users.dlx", "x-dead-letter-routing-key": "q"}


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_an_instance_queue_is_its_own_and_dead_letters_with_the_subscription(queue_type: QueueType) -> None:
    one = QueueTopology("users", "q", ("user.updated",), delivery="each-instance", queue_type=queue_type)
    other = QueueTopology("users", "q", ("user.updated",), delivery="each-instance")
    assert one.queue != other.queue
    assert one.queue.startswith("q.")
    assert not one.counts_deliveries  # exclusive queues are classic
    assert one.arguments() == {"x-dead-letter-exchange": "users.dlx", "x-dead-letter-routing-key": "q"}
    assert one.dead_letter_queue == "q.dead"


def test_instance_queue_names_say_whose_they_are() -> None:
    host, pid, token = instance_queue_name("turnstile.changes").removeprefix("turnstile.changes.").split(".")
    assert host
    assert pid.isdigit()
    assert len(token) == 6
