from __future__ import annotations

import uuid

import pytest

from tests.services import RABBITMQ_URL, REDIS_URL, require


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require(REDIS_URL, "Redis")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return require(RABBITMQ_URL, "RabbitMQ")


@pytest.fixture
def unique() -> str:
    """A short random name to isolate a test's keys, queues and exchanges."""
    return uuid.uuid4().hex[:12]
