"""Redis for the whole process: one connection (`RedisConnection`), one outage exception
(`RedisUnavailable`, raised inside `redis_errors()`), and the modules behind them.

- `urls`: the `REDIS_URL` forms (standalone, TLS, Unix socket, Sentinel, Cluster).
- `factory`: the coredis client each form needs. `patches`: what coredis 6.9 gets wrong.
- `owner`: the task that holds the client's ``async with``.
- `mirror`: process-local copies of hot keys, kept exact by Redis's invalidation pushes.
- `connection`: `RedisConnection`, which puts them together.
"""

from app.clients.redis.connection import RedisConnection
from app.clients.redis.errors import RedisUnavailable, redis_errors

__all__ = ["RedisConnection", "RedisUnavailable", "redis_errors"]
