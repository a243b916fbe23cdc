"""Address arithmetic for isolation: "every remote address except the management ones", as ranges.

Windows Firewall evaluates block rules before allow rules, so "block all but X" cannot be a block-all rule plus an
allow rule for X — X would be blocked too. Instead the block rules list the complement of the management
addresses over the whole IPv4 and IPv6 spaces, as ``first-last`` ranges Windows accepts in ``RemoteAddress``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["complement_ranges", "format_networks", "token_span"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SPACES: dict[int, tuple[int, int]] = {4: (0, 2**32 - 1), 6: (0, 2**128 - 1)}


def _fmt(version: int, lo: int, hi: int) -> str:
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return str(make(lo)) if lo == hi else f"{make(lo)}-{make(hi)}"


def complement_ranges(networks: Iterable[Network]) -> list[str]:
    """Ranges covering every IPv4 and IPv6 address not in ``networks`` (IPv4 first, ascending)."""
    nets = list(networks)
    out: list[str] = []
    for version, (space_lo, space_hi) in _SPACES.items():
        spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in nets if n.version == version)
        cursor = space_lo
        for lo, hi in spans:
            if lo > cursor:
                out.append(_fmt(version, cursor, lo - 1))
            cursor = max(cursor, hi + 1)
        if cursor <= space_hi:
            out.append(_fmt(version, cursor, space_hi))
    return out


def format_networks(networks: Iterable[Network]) -> list[str]:
    """Management addresses as Windows prints them: a bare address for /32 and /128, CIDR otherwise."""
    out = []
    for n in networks:
        out.append(str(n.network_address) if n.num_addresses == 1 else str(n))
    return out


def token_span(token: str) -> tuple[int, int, int] | None:
    """``(version, first, last)`` of an address token as Windows prints it (``a``, ``a-b``, ``a/len``,
    ``a/mask``); ``None`` for keywords such as ``Any``. Lets verify compare what it asked for with what it reads."""
    token = token.strip()
    try:
        if "-" in token:
            lo_s, hi_s = token.split("-", 1)
            lo, hi = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
            return lo.version, int(lo), int(hi)
        net = ipaddress.ip_network(token, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.broadcast_address)
