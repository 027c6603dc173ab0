"""`redis_errors()`: outages become RedisUnavailable; bugs stay what they are."""

from __future__ import annotations

import pytest
from coredis.exceptions import (
    ClusterDownError,
    ConnectionError,
    RedisClusterError,
    ResponseError,
    TryAgainError,
)

from app.clients.redis import RedisUnavailable, redis_errors
from app.clients.redis.errors import caused_by_timeout, describe


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        TimeoutError(),
        OSError("unreachable"),
        ClusterDownError("CLUSTERDOWN"),
        TryAgainError("TRYAGAIN"),
        RedisClusterError("no node"),
        RuntimeError("Connection pool is not initialized"),
    ],
)
def test_outages_become_redis_unavailable(exc: Exception) -> None:
    with pytest.raises(RedisUnavailable) as info, redis_errors():
        raise exc
    assert info.value.__cause__ is exc


@pytest.mark.parametrize("exc", [ResponseError("WRONGTYPE"), RuntimeError("a bug"), ValueError("bad")])
def test_command_errors_and_bugs_pass_through(exc: Exception) -> None:
    with pytest.raises(type(exc)), redis_errors():
        raise exc


def test_descriptions_name_the_type_and_the_message() -> None:
    assert describe(ConnectionError("refused")) == "ConnectionError: refused"
    assert describe(TimeoutError()) == "TimeoutError"


def test_a_timeout_is_found_anywhere_in_the_chain() -> None:
    outer = ConnectionError("read failed")
    outer.__cause__ = RuntimeError("wrapped")
    outer.__cause__.__context__ = TimeoutError()
    assert caused_by_timeout(outer)
    assert not caused_by_timeout(ConnectionError("refused"))
