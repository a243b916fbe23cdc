"""Parse and police the addresses a responder asks to block, before anything connects.

Why so strict: every address ends up as text on a device CLI. A newline, ``;`` or space would inject a second
command, and Python's ``ipaddress`` happily accepts non-ASCII digits (``"１.２.３.４"`` in some versions, and
``int()`` takes Arabic-Indic digits), so a value must first match an ASCII-only regex and only then be parsed.
After parsing, whole-Internet prefixes, protected ranges (management, the device itself) and — unless
``allow_private`` — private/loopback/link-local/multicast space are refused. Every refusal is an
:class:`~connectors.errors.InvalidInput` naming the field and the offending value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

from connectors.errors import InvalidInput

__all__ = [
    "MAX_ADDRESSES",
    "MAX_LEN",
    "Network",
    "covered_by",
    "parse_addresses",
    "parse_network",
    "parse_protected",
    "to_text",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_LEN = 43            # longest IPv6 text + "/128"
MAX_ADDRESSES = 5000    # one request; a threat feed bigger than this should be split on purpose
_ADDR_RE = re.compile(r"\A(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]{2,39})(?:/[0-9]{1,3})?\Z", re.ASCII)
_PRIVATE = tuple(ipaddress.ip_network(c) for c in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
    "::1/128", "fe80::/10", "fc00::/7"))
_SPECIAL = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("240.0.0.0/4"))


def _shown(value: Any) -> str:
    """A printable, bounded rendering of a rejected value (never echo 10 kB or control characters raw)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def to_text(net: Network) -> str:
    """Canonical text: a bare address for a single host, ``addr/len`` for a prefix."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def parse_network(value: Any, field: str = "addresses") -> Network:
    """Parse one address or CIDR (host bits ignored) from an ASCII string, or raise InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: {_shown(value)} is not a string", detail={"field": field})
    if len(value) > MAX_LEN or not _ADDR_RE.match(value):
        raise InvalidInput(f"{field}: {_shown(value)} is not an IPv4/IPv6 address or CIDR",
                           detail={"field": field, "value": value[:MAX_LEN]})
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {_shown(value)} is not a valid address ({exc})",
                           detail={"field": field, "value": value}) from None


def parse_protected(values: Any, field: str = "protected") -> list[Network]:
    """Protected CIDRs passed by the engine (management, protected ranges, the device's own address)."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInput(f"{field}: must be a list of CIDRs, got {_shown(values)}", detail={"field": field})
    return [parse_network(v, field) for v in values]


def _private(net: Network) -> bool:
    """Overlaps any non-global range (a supernet like 8.0.0.0/5 that swallows 10/8 counts too)."""
    if any(net.version == p.version and net.overlaps(p) for p in _PRIVATE):
        return True
    return any(a.is_private for a in (net.network_address, net.broadcast_address))


def _reserved(net: Network) -> bool:
    first, last = net.network_address, net.broadcast_address
    if any(a.is_multicast or a.is_unspecified or a.is_reserved for a in (first, last)):
        return True
    return net.version == 4 and any(net.overlaps(s) for s in _SPECIAL)


def parse_addresses(values: Any, *, protected: Iterable[Network] = (), allow_private: bool = False,
                    families: frozenset[int] = frozenset({4, 6}), field: str = "addresses") -> list[Network]:
    """Validate a request: a non-empty list of distinct, blockable networks, in the order given."""
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidInput(f"{field}: must be a non-empty list of addresses, got {_shown(values)}",
                           detail={"field": field})
    if len(values) > MAX_ADDRESSES:
        raise InvalidInput(f"{field}: {len(values)} addresses in one request (max {MAX_ADDRESSES})",
                           detail={"field": field})
    protected = list(protected)
    out: list[Network] = []
    for raw in values:
        net = parse_network(raw, field)
        where = {"field": field, "value": raw}
        if net.prefixlen == 0:
            raise InvalidInput(f"{field}: {raw!r} would block the whole Internet", detail=where)
        if net.version not in families:
            raise InvalidInput(f"{field}: {raw!r} is IPv{net.version}, which this device dialect cannot block",
                               detail=where)
        for p in protected:
            if p.version == net.version and net.overlaps(p):
                raise InvalidInput(f"{field}: {raw!r} overlaps protected range {p}", detail=where)
        if _reserved(net):
            raise InvalidInput(f"{field}: {raw!r} is multicast/reserved/unspecified space", detail=where)
        if not allow_private and _private(net):
            raise InvalidInput(f"{field}: {raw!r} is private/loopback/link-local space "
                               "(pass allow_private: true to block it)", detail=where)
        if net not in out:
            out.append(net)
    return out


def covered_by(net: Network, members: Iterable[Network]) -> bool:
    """True when ``net`` equals or lies inside one of ``members`` (same family)."""
    return any(m.version == net.version and net.subnet_of(m) for m in members)  # type: ignore[arg-type]
