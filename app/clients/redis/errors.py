"""One exception for "Redis cannot answer now", whatever coredis raised to say so."""

from __future__ import annotations

from typing import Final, Literal

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


class _RedisErrors:
    """`redis_errors()`'s context manager: a class, because it wraps every Redis read of every
    request and a generator-based one costs a frame and a generator per use."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, RuntimeError) and POOL_NOT_ENTERED in str(exc):
            raise RedisUnavailable("Redis is not connected yet") from exc
        if not _unavailable(exc):
            return False  # a command error: passes through unchanged
        raise RedisUnavailable(describe(exc)) from exc


_REDIS_ERRORS: Final = _RedisErrors()


def redis_errors() -> _RedisErrors:
    """Turn coredis's "cannot reach Redis now" errors into `RedisUnavailable`.

    Command errors (a wrong type, a script error, keys in different cluster slots) are bugs,
    not outages, and pass through unchanged.
    """
    return _REDIS_ERRORS


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, UNAVAILABLE):
        return True
    if isinstance(exc, RedisClusterError):
        # The bare base class is what coredis raises when no cluster node can be reached.
        return type(exc) is RedisClusterError
    return False


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
