"""Who the client is behind reverse proxies: TRUSTED_PROXIES and X-Forwarded-For (contract §3).

Anyone can send `X-Forwarded-For`, so it is believed only as far as it was written by proxies
the operator trusts. Walking the header from the right, starting at the socket peer, each hop
that is a trusted proxy vouches for the address on its left; the first address that is not a
trusted proxy is the client. Without TRUSTED_PROXIES the header is ignored and the client is
the socket peer, so a client cannot choose the address its rate limits are counted under.

    X-Forwarded-For: 203.0.113.9, 198.51.100.4, 10.0.3.7      peer 10.0.0.12
    TRUSTED_PROXIES=10.0.0.0/8  →  client 198.51.100.4 (203.0.113.9 is only its claim)

A peer that is not trusted means the header is ignored. A hop that is not an IP address stops
the walk at the last address that was (a proxy that wrote garbage vouches for nothing further).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final, final

from aiohttp import web

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR: Final = "X-Forwarded-For"


def parse_hop(text: str) -> IPAddress | None:
    """One X-Forwarded-For entry as an address, or None when it is not one.

    Some proxies append a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`); it is dropped.
    An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) is
    read as the IPv4 address it maps, so IPv4 networks match it.
    """
    text = text.strip()
    if text.startswith("["):
        text, _, port = text[1:].partition("]")
        if port and not (port.startswith(":") and port[1:].isdigit()):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@final
class TrustedProxies:
    """The trusted networks, split by IP version once at start-up; `client(peer, forwarded)` per request."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)
        self._v4 = tuple(n for n in self.networks if n.version == 4)
        self._v6 = tuple(n for n in self.networks if n.version == 6)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: IPAddress) -> bool:
        networks = self._v4 if address.version == 4 else self._v6
        return any(address in network for network in networks)

    def client(self, peer: str | None, forwarded: Iterable[str]) -> str:
        """The client's address, given the socket peer and every X-Forwarded-For header value in order."""
        if not self.networks or not peer:
            return peer or ""
        address = parse_hop(peer)
        if address is None or not self.trusts(address):
            return peer
        hops = [hop for value in forwarded for hop in value.split(",")]
        for hop in reversed(hops):
            before = parse_hop(hop)
            if before is None:
                break
            address = before
            if not self.trusts(address):
                break
        return str(address)


NO_TRUSTED_PROXIES: Final = TrustedProxies()
trusted_proxies_key: Final = web.AppKey("trusted_proxies", TrustedProxies)


def client_address(request: web.Request) -> str:
    """The address of the client that sent `request`, as the operator's proxies report it.

    Without TRUSTED_PROXIES this is the socket peer and `X-Forwarded-For` is ignored. With it,
    `X-Forwarded-For` is walked from the right, starting at the peer, past every trusted proxy;
    the first address that is not one is the client (contract §3). Use it for anything keyed
    on the client (rate limits, audit lines): it cannot be chosen by the client. Returns ""
    when the transport has no peer address (a Unix socket).
    """
    proxies = request.app.get(trusted_proxies_key, NO_TRUSTED_PROXIES)
    if not proxies:
        return request.remote or ""
    return proxies.client(request.remote, request.headers.getall(FORWARDED_FOR, ()))
