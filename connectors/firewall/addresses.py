"""Parse and police the addresses a responder asks to block, before anything connects.

Why so strict: every address ends up as text on a device CLI. A newline, ``;`` or space would inject a second
command, and Python's ``ipaddress`` happily accepts non-ASCII digits (``"１.２.３.４"`` in some versions, and
``int()`` takes Arabic-Indic digits), so a value must first match an ASCII-only regex and only then be parsed.
After parsing, whole-Internet prefixes, protected ranges (management, the device itself), loopback,
link-local, multicast and reserved space are refused always; RFC 1918/ULA space unless ``allow_private``; and
prefixes shorter than a minimum (default /16 IPv4, /32 IPv6) unless ``allow_broad``. Every refusal is an
:class:`~connectors.errors.InvalidInput` naming the field, the offending value and the flag that would allow it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from connectors.errors import InvalidInput

__all__ = [
    "DEFAULT_MIN_PREFIX",
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
_NEVER: tuple[tuple[str, tuple[Network, ...]], ...] = tuple(
    (what, tuple(ipaddress.ip_network(c) for c in cidrs)) for what, cidrs in (
        # RFC 1122 3.2.1.3 / RFC 4291 2.5.3: the device's own loopback; blocking it breaks the device itself
        ("loopback", ("127.0.0.0/8", "::1/128")),
        # RFC 3927 / RFC 4291 2.5.6: link-local; neighbour discovery, DHCP and routing protocols live here
        ("link-local", ("169.254.0.0/16", "fe80::/10")),
        # RFC 5771 / RFC 4291 2.7: multicast; OSPF, VRRP, mDNS — never a single attacker
        ("multicast", ("224.0.0.0/4", "ff00::/8")),
        # RFC 1122 / RFC 1112 / RFC 4291 2.5.2: "this network", reserved class E, broadcast, unspecified
        ("unspecified/reserved", ("0.0.0.0/8", "240.0.0.0/4", "::/128")),
        # RFC 4291 2.5.5: IPv4-mapped IPv6 — block the IPv4 address itself
        ("IPv4-mapped IPv6", ("::ffff:0:0/96",)),
    ))
#: What ``allow_private`` (``--allow-private``) unlocks: an attacker inside the network. RFC 1918, RFC 4193 ULA and
#: RFC 6598 shared (CGNAT) space — nothing else.
_PRIVATE = tuple(ipaddress.ip_network(c) for c in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
#: Shortest prefix blocked without ``allow_broad``: a /8 typo silently cuts off a sixteenth of the Internet.
DEFAULT_MIN_PREFIX: dict[int, int] = {4: 16, 6: 32}
PRIVATE_HINT = "pass --allow-private on the command line, or allow_private: true in a runbook"
BROAD_HINT = "pass --allow-broad on the command line, or allow_broad: true in a runbook"


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


def _never(net: Network) -> str | None:
    """The kind of space ``net`` touches that no flag unlocks, or None."""
    for what, ranges in _NEVER:
        if any(net.version == r.version and net.overlaps(r) for r in ranges):
            return what
    return None


def _private(net: Network) -> bool:
    """Overlaps RFC 1918/ULA/CGNAT space (a supernet like 8.0.0.0/5 that swallows 10/8 counts too)."""
    return any(net.version == p.version and net.overlaps(p) for p in _PRIVATE)


def parse_addresses(values: Any, *, protected: Iterable[Network] = (), allow_private: bool = False,
                    families: frozenset[int] = frozenset({4, 6}), field: str = "addresses",
                    allow_broad: bool = False, min_prefix: Mapping[int, int] | None = None) -> list[Network]:
    """Validate a request: a non-empty list of distinct, blockable networks, in the order given.

    Refused, in this order, naming the value: the whole Internet; a family the dialect cannot block; overlap
    with a protected range (management, protected CIDRs, the device's own addresses); loopback, link-local,
    multicast and reserved space (no flag unlocks these); private space unless ``allow_private``; prefixes
    shorter than ``min_prefix`` (default /16 IPv4, /32 IPv6) unless ``allow_broad``. Documentation ranges
    (RFC 5737, RFC 3849) are ordinary addresses here: blocking them harms nothing.
    """
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidInput(f"{field}: must be a non-empty list of addresses, got {_shown(values)}",
                           detail={"field": field})
    if len(values) > MAX_ADDRESSES:
        raise InvalidInput(f"{field}: {len(values)} addresses in one request (max {MAX_ADDRESSES})",
                           detail={"field": field})
    protected = list(protected)
    shortest = {**DEFAULT_MIN_PREFIX, **(min_prefix or {})}
    out: list[Network] = []
    for raw in values:
        net = parse_network(raw, field)
        where = {"field": field, "value": raw}
        if net.prefixlen == 0:
            raise InvalidInput(f"{field}: {raw!r} would block the whole Internet", detail=where)
        if net.version not in families:
            raise InvalidInput(f"{field}: {raw!r} is IPv{net.version}, which this device dialect cannot block",
                               detail={**where, "reason": "family"})
        for p in protected:
            if p.version == net.version and net.overlaps(p):
                raise InvalidInput(f"{field}: {raw!r} overlaps protected range {p}", detail=where)
        never = _never(net)
        if never:
            raise InvalidInput(f"{field}: {raw!r} is or contains {never} space, which is never blocked "
                               "(no flag allows it)", detail={**where, "reason": "never"})
        if not allow_private and _private(net):
            raise InvalidInput(f"{field}: {raw!r} is private space (RFC 1918/ULA/CGNAT; {PRIVATE_HINT})",
                               detail={**where, "reason": "private"})
        if not allow_broad and net.prefixlen < shortest[net.version]:
            raise InvalidInput(f"{field}: {raw!r} is broader than /{shortest[net.version]} "
                               f"({net.num_addresses:,} addresses; {BROAD_HINT})", detail={**where, "reason": "broad"})
        if net not in out:
            out.append(net)
    return out


def covered_by(net: Network, members: Iterable[Network]) -> bool:
    """True when ``net`` equals or lies inside one of ``members`` (same family)."""
    return any(m.version == net.version and net.subnet_of(m) for m in members)  # type: ignore[arg-type]
