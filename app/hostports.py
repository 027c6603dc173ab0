"""`host`, `host:port` or `[v6addr]:port`, as URLs and host lists name a server."""

from __future__ import annotations


def split_host_port(item: str) -> tuple[str, int | None]:
    """The host and the port (None when there is none).

    Raises:
        ValueError: no host, a port that is not a number 1-65535, or an IPv6 address without
            its brackets (its colons would read as a port).
    """
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest and not rest.startswith(":"):
            msg = f"{item!r}: nothing may follow an IPv6 address but :port"
            raise ValueError(msg)
        port = rest[1:]
    else:
        host, _, port = item.partition(":")
    if not host or ":" in port or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        msg = f"{item!r}: expected host or host:port, with a port 1-65535"
        raise ValueError(msg)
    return host, int(port) if port else None
