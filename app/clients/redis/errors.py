"""One exception for "Redis cannot answer now", whatever coredis raised to say so."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from coredis.exceptions import (
    ClusterDownError,
    ClusterError,
    ConnectionError,
    RedisClusterError,
    SentinelError,
    TryAgainError,
)

# What coredis raises while a cluster client is between two lives of its ``async with``.
POOL_NOT_ENTERED: Final = "Connection pool is not initialized"


class RedisUnavailable(Exception):
    """Redis is down, unreachable or too slow to answer within the configured timeouts."""


class NodeDown(ConnectionError):
    """A cluster command for a slot of a master known to be unreachable (not sent, not retried)."""


UNAVAILABLE: Final = (
    ConnectionError,  # refused, reset, handshake failed (also BusyLoadingError)
    TimeoutError,  # no reply within the stream timeout, no slot within the pool timeout
    OSError,
    SentinelError,  # no primary (or a stale one) behind the sentinels
    ClusterDownError,
    TryAgainError,
    ClusterError,  # cluster redirections exhausted
)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Turn coredis's "cannot reach Redis now" errors into `RedisUnavailable`.

    Command errors (a wrong type, a script error, keys in different cluster slots) are bugs,
    not outages, and pass through unchanged.
    """
    try:
        yield
    except UNAVAILABLE as exc:
        raise RedisUnavailable(describe(exc)) from exc
    except RedisClusterError as exc:
        # The bare base class is what coredis raises when no cluster node can be reached.
        if type(exc) is not RedisClusterError:
            raise
        raise RedisUnavailable(describe(exc)) from exc
    except RuntimeError as exc:
        if POOL_NOT_ENTERED not in str(exc):
            raise
        raise RedisUnavailable("Redis is not connected yet") from exc


def describe(exc: BaseException) -> str:
    """``Type: message`` (or the type alone), for log lines and `RedisUnavailable`'s text."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def caused_by_timeout(exc: BaseException | None) -> bool:
    """Whether a timeout is somewhere in `exc`'s chain of causes."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
