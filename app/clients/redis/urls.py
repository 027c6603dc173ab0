"""`REDIS_URL` forms, parsed once so a bad URL fails at construction, not at start.

- ``redis://[[user]:password@]host[:port][/db]``: one server (query options as coredis's
  `ConnectionPool.from_url`, e.g. ``?max_connections=32``).
- ``rediss://…``: the same over TLS (``?ssl_ca_certs=…&ssl_cert_reqs=required&ssl_certfile=…``).
- ``unix://[[user]:password@]/path/to/redis.sock?db=0``: a Unix socket.
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]``: the primary
  of a Sentinel-managed set; the credentials are the primary's (the sentinels take none).
- ``redis+cluster://[[user]:password@]host:port[,host:port…]`` (``rediss+cluster://`` for TLS):
  a Redis Cluster, seeded from those nodes.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import unquote, urlsplit

import attrs

from app.hostports import split_host_port

PLAIN_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
CLUSTER_SCHEMES: Final = frozenset({"redis+cluster", "rediss+cluster"})
SENTINEL_SCHEME: Final = "redis+sentinel"

# What /readyz and the log call each kind of deployment.
Topology = Literal["standalone", "sentinel", "cluster"]


@attrs.frozen
class RedisTarget:
    """What a URL names. A plain URL keeps its own text: coredis parses its options itself."""

    topology: Topology
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Raises:
    ValueError: the scheme is not one of the forms above, or a host list or path is malformed.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in PLAIN_SCHEMES:
        _check_db_path(url, scheme)
        return RedisTarget(topology="standalone")
    if scheme == SENTINEL_SCHEME or scheme in CLUSTER_SCHEMES:
        return _parse_multi_host(url, scheme)
    known = ", ".join(sorted({*PLAIN_SCHEMES, *CLUSTER_SCHEMES, SENTINEL_SCHEME}))
    msg = f"unsupported Redis URL scheme {scheme!r}: use one of {known}"
    raise ValueError(msg)


def _parse_multi_host(url: str, scheme: str) -> RedisTarget:
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = 26379 if scheme == SENTINEL_SCHEME else 6379
    nodes = tuple(_host_port(item, url, default_port) for item in hostlist.split(",") if item)
    if not nodes:
        msg = f"Redis URL {redact_url(url)} names no host"
        raise ValueError(msg)
    path = [p for p in parts.path.split("/") if p]
    user, secret = unquote(username) or None, unquote(password) or None
    if scheme in CLUSTER_SCHEMES:
        if path:  # a cluster has only db 0: a /db would be dropped without a word
            msg = f"Redis URL {redact_url(url)} names a database; a cluster has only db 0: end it at the hosts"
            raise ValueError(msg)
        tls = scheme.startswith("rediss")
        return RedisTarget(topology="cluster", nodes=nodes, username=user, password=secret, tls=tls)
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        msg = f"Redis URL {redact_url(url)} must end in /service_name or /service_name/db"
        raise ValueError(msg)
    db = int(path[1]) if len(path) == 2 else 0
    service = unquote(path[0])
    return RedisTarget(topology="sentinel", nodes=nodes, service=service, db=db, username=user, password=secret)


def _check_db_path(url: str, scheme: str) -> None:
    """A plain URL's path is its db number (coredis took `/abc` as db 0, without a word); a Unix
    socket's path is the socket's."""
    if scheme == "unix":
        return
    path = urlsplit(url).path.strip("/")
    if path and not (path.isdigit() and path.isascii()):
        msg = f"Redis URL {redact_url(url)} must end in /db, a number (or nothing: db 0), not /{path}"
        raise ValueError(msg)


def _host_port(item: str, url: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6addr]:port``."""
    try:
        host, port = split_host_port(item)
    except ValueError:
        msg = f"Redis URL {redact_url(url)} has a bad host:port {item!r}"
        raise ValueError(msg) from None
    return host, default_port if port is None else port


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hosts}"
