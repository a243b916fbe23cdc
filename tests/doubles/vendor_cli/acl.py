"""Cisco ACL packet verdicts shared by the ASA and IOS models (see tests/doubles/vendor_cli/cisco.py for the
documented evaluation order: ingress ``in`` ACL, egress ``out`` ACL, ACEs in order, implicit deny)."""

from __future__ import annotations

import ipaddress

from tests.doubles.vendor_cli.base import PLACEHOLDER, canon

__all__ = ["acl_drops", "inside", "members_canon"]

_INSIDE = tuple(ipaddress.ip_network(n) for n in ("10.1.0.0/24", "192.0.2.0/24"))
_PORTS = {"www": 80, "https": 443, "ssh": 22}


def inside(addr: str) -> bool:
    return any(ipaddress.ip_address(addr) in net for net in _INSIDE)


def _ace_verdict(ace: str, src: str, dst: str, groups: dict[str, list[str]]) -> str | None:
    """``permit``/``deny`` when the ACE (``[extended] permit|deny ip|tcp SRC DST [eq PORT]``, SRC/DST ``any``,
    ``host A`` or ``object-group G``) matches a TCP packet src → dst:80, else None."""
    words = ace.split()
    if words and words[0] == "extended":
        words = words[1:]
    action, proto, rest = words[0], words[1], words[2:]
    if proto not in ("ip", "tcp"):
        return None

    def take(addr: str) -> bool | None:
        nonlocal rest
        if rest[0] == "any":
            rest = rest[1:]
            return True
        if rest[0] == "host":
            hit, rest = rest[1] == addr, rest[2:]
            return hit
        if rest[0] == "object-group":
            hit = addr in members_canon(groups.get(rest[1], [])) or any(
                ipaddress.ip_address(addr) in ipaddress.ip_network(m) for m in members_canon(groups.get(rest[1], [])))
            rest = rest[2:]
            return hit
        return None

    if not take(src) or not take(dst):
        return None
    if rest[:1] == ["eq"] and _PORTS.get(rest[1], int(rest[1]) if rest[1].isdigit() else -1) != 80:
        return None
    return action


def acl_drops(aces: list[str], src: str, dst: str, groups: dict[str, list[str]]) -> bool:
    for ace in aces:
        verdict = _ace_verdict(ace, src, dst, groups)
        if verdict is not None:
            return verdict == "deny"
    return True   # implicit deny


def members_canon(lines: list[str]) -> set[str]:
    out: set[str] = set()
    for ln in lines:
        parts = ln.split()
        if parts[0] == "host":
            out.add(canon(parts[1]))
        elif len(parts) == 2:
            out.add(canon(parts[0], parts[1]))
        else:
            out.add(canon(parts[0]))
    out.discard(PLACEHOLDER)
    return out
