"""Flows isolation keeps open besides management: the inventory's allow-list (``Target.allow``) as rule text.

Why stateless pairs: the isolation ruleset deliberately has no ``ct state established,related accept`` (it would
keep an attacker's open sessions alive, LAB.md), so every kept flow is written as two rules, the request and its
reply: ``out`` to a resolver on udp/53 is ``daddr R udp dport 53`` on output plus ``saddr R udp sport 53`` on
input; ``in`` from a scanner on tcp/9100 is ``saddr S tcp dport 9100`` in and ``daddr S tcp sport 9100`` out.
``service: dhcp`` keeps the DHCP client (UDP 67/68, DHCPv6 546/547: RFC 2131, RFC 8415) so a lease can be
renewed while contained. Addresses must be pinned at plan time (``resolve: plan``); names resolved on the target
(``resolve: target``) and ``service: dns`` (the host's own resolvers) are refused on purpose: the host being
isolated is the suspect, and both would let its /etc/hosts, resolv.conf or resolver choose which address stays
reachable (a DNS tunnel endpoint, say) while status says "contained". The issue's ask — FQDNs "resolved and pinned
at plan time; shown in the plan" — is ``resolve: plan``, done on the agent's side (docs/linux-hosts.md).
Every value is re-parsed here (:mod:`ipaddress`, ``int``), never passed through as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.errors import InvalidInput
from connectors.types import AllowRule

__all__ = ["Flow", "flows_from", "iptables_rules", "nft_rules", "parse_pins", "pinned"]


@dataclass(frozen=True)
class Flow:
    """One kept flow: peer network (None = any, only for DHCP), protocol (None = any), ports, direction."""

    peer: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    protocol: str | None
    ports: tuple[int, ...]
    direction: str  # out | in
    source: str
    version: int = 4  # for peer-less flows: which family's iptables gets it


def _bad(rule: AllowRule, why: str) -> InvalidInput:
    return InvalidInput(f"allow entry from {rule.source}: {why}", connector="ssh_linux",
                        detail={"field": "allow", "source": rule.source})


def parse_pins(value: Any) -> dict[str, tuple[str, ...]]:
    """``allow_pins`` (journaled with the intent by the planner's resolve step: agent.reach.resolve_names): each
    DNS name of a ``resolve: plan`` allow entry and the addresses it was pinned to when the plan was shown."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"allow_pins: {value!r} must map DNS names to address lists", connector="ssh_linux",
                           detail={"field": "allow_pins"})
    out: dict[str, tuple[str, ...]] = {}
    for name, addrs in value.items():
        if not isinstance(name, str) or not isinstance(addrs, list) or not addrs:
            raise InvalidInput(f"allow_pins: {name!r}: {addrs!r} must be a non-empty list of addresses",
                               connector="ssh_linux", detail={"field": "allow_pins"})
        try:
            out[name] = tuple(str(ipaddress.ip_address(str(a))) for a in addrs)
        except ValueError:
            raise InvalidInput(f"allow_pins: {name!r}: {addrs!r} holds something that is not an IP address",
                               connector="ssh_linux", detail={"field": "allow_pins"}) from None
    return out


def pinned(rules: Sequence[AllowRule], pins: Mapping[str, Sequence[str]]) -> tuple[AllowRule, ...]:
    """The allow-list with each ``resolve: plan`` DNS name replaced by the addresses it was pinned to at plan time
    (a name without pins stays: :func:`flows_from` refuses it rather than leave it out)."""
    out = []
    for rule in rules:
        if rule.names and rule.resolve == "plan" and all(n in pins for n in rule.names):
            found = [a for n in rule.names for a in pins[n]]
            out.append(replace(rule, to=tuple(dict.fromkeys((*rule.to, *found))), names=()))
        else:
            out.append(rule)
    return tuple(out)


def flows_from(rules: Sequence[AllowRule]) -> tuple[Flow, ...]:
    """Parse the allow-list into flows; refuse what cannot be expressed (before anything connects)."""
    out: list[Flow] = []
    for rule in rules:
        if rule.service == "dhcp":  # client 68 -> server 67 (v4), 546 -> 547 (v6); the reply rule covers the rest
            out += [Flow(None, "udp", (67,), "out", rule.source, 4), Flow(None, "udp", (547,), "out", rule.source, 6)]
            continue
        if rule.service is not None:
            raise _bad(rule, f"service: {rule.service} is refused by ssh_linux: it would let the suspect host's own "
                             "configuration choose what stays open; list the resolvers under to: (with proto: udp, "
                             "ports: [53]) so they are pinned and shown in the plan")
        if rule.names and rule.resolve == "plan":  # never silently left out: the flow asked for would be cut
            raise _bad(rule, f"DNS name(s) {', '.join(rule.names)} were not pinned to addresses before the plan "
                             "was shown (resolve: plan); plan again (the agent, or the site's worker, resolves them)")
        if rule.resolve == "target" or not rule.to:
            raise _bad(rule, "names resolved on the target (resolve: target) are refused by ssh_linux: the suspect "
                             "host's resolver would choose the address; use resolve: plan so the agent pins the "
                             "addresses and the plan shows them")
        protocol = None if rule.protocol == "any" else rule.protocol
        ports = tuple(int(p) for p in rule.ports)
        if any(not 1 <= p <= 65535 for p in ports):
            raise _bad(rule, f"ports {list(ports)} must be 1..65535")
        protocols: list[str | None] = ["tcp", "udp"] if protocol is None and ports else [protocol]
        for text in rule.to:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise _bad(rule, f"{text!r} is not an IP address or network") from None
            if net.prefixlen == 0:
                raise _bad(rule, f"{text} would keep everything open")
            for direction in ("out", "in") if rule.direction == "both" else (rule.direction,):
                out += [Flow(net, p, ports, direction, rule.source, net.version) for p in protocols]
    return tuple(dict.fromkeys(out))


def _ports(ports: Sequence[int]) -> str:
    return str(ports[0]) if len(ports) == 1 else "{" + ", ".join(str(p) for p in ports) + "}"


def nft_rules(flows: Sequence[Flow]) -> dict[str, list[str]]:
    """Canonical rules (as :func:`~.rules.nft_summary` renders them) per chain: request and reply of each flow."""
    from connectors.ssh_linux.rules import net_text
    out: dict[str, list[str]] = {"input": [], "output": []}
    for f in flows:
        fam = "ip" if f.version == 4 else "ip6"
        # request leaves through output for "out" flows (to the peer's port), enters through input for "in"
        req_chain, rep_chain = ("output", "input") if f.direction == "out" else ("input", "output")
        req_peer = "daddr" if f.direction == "out" else "saddr"
        rep_peer = "saddr" if f.direction == "out" else "daddr"
        for chain, peer_field, port_field in ((req_chain, req_peer, "dport"), (rep_chain, rep_peer, "sport")):
            parts = [f"{fam} {peer_field} {net_text(f.peer)}"] if f.peer is not None else []
            if f.protocol and f.ports:
                parts.append(f"{f.protocol} {port_field} {_ports(f.ports)}")
            elif f.protocol:
                parts.append(f"l4proto {f.protocol}")
            out[chain].append(" ".join([*parts, "accept"]))
    return out


def iptables_rules(flows: Sequence[Flow], version: int, mark: str) -> dict[str, list[str]]:
    """``-A`` lines (as iptables-save prints them) per chain for the flows of one family."""
    out: dict[str, list[str]] = {"CAGENT_IN": [], "CAGENT_OUT": []}
    for f in flows:
        if f.version != version:
            continue
        req_chain, rep_chain = ("CAGENT_OUT", "CAGENT_IN") if f.direction == "out" else ("CAGENT_IN", "CAGENT_OUT")
        req_peer, rep_peer = ("-d", "-s") if f.direction == "out" else ("-s", "-d")
        for chain, peer_flag, port_flag in ((req_chain, req_peer, "dport"), (rep_chain, rep_peer, "sport")):
            parts = [f"-A {chain}"]
            if f.peer is not None:
                parts.append(f"{peer_flag} {f.peer}")
            if f.protocol:
                parts.append(f"-p {f.protocol}")
                if len(f.ports) == 1:
                    parts.append(f"-m {f.protocol} --{port_flag} {f.ports[0]}")
                elif f.ports:
                    parts.append(f"-m multiport --{port_flag}s {','.join(str(p) for p in f.ports)}")
            parts += [mark, "-j ACCEPT"]
            out[chain].append(" ".join(parts))
    return out
