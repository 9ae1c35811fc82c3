"""The client's address: the peer, or behind trusted proxies the last untrusted hop they saw.

Only proxies listed in `TRUSTED_PROXIES` are believed; anyone else's `X-Forwarded-For` is
ignored, so a client cannot pick the address its rate limits and security log see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: web.BaseRequest, trusted: tuple[Network, ...]) -> str:
    peer = request.remote or ""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, trusted):
            return hop
    return peer
