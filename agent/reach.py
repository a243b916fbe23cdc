"""How the agent reaches a target, and what isolation leaves open: sites, jump hosts and allow-lists.

Why one module for the three: they answer the same question for every connector — "along which path, from which
worker, and which flows besides management must stay" — and the Linux, Windows, scale-out and CLI work all read
them. The inventory sections (documented in ``config/inventory.yaml`` and docs/architecture.md):

- ``sites.NAME``: ``jump`` (the ProxyJump chain for every target at the site) and ``allow`` (flows kept open on
  every host there). A target's ``site`` must name a declared site, so a typo cannot silently route nowhere.
- ``jump_hosts.NAME``: ``address``, ``port``, ``host_key`` (required: the bastion's key is pinned like any
  target's) and ``credentials``. A chain is written out in full, outermost first (``jump: [outer, inner]``).
- ``tags.NAME.allow``: flows kept open on every host carrying the tag.
- ``allow`` entries: ``{to: ADDR|CIDR|NAME or a list, proto, ports, direction, resolve, note}`` or
  ``{service: dns|dhcp}``. Allow-lists add up (connector defaults, site, tags, host); nothing narrows them.

Nothing here connects: DNS names stay names until the read-only resolve step pins them (:func:`pin_names`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

from agent.errors import InputError
from agent.secrets import CredentialsSpec, parse_credentials
from agent.validate import INVENTORY_NAME
from agent.yamlsrc import Node
from connectors.types import AllowRule, Hop

__all__ = ["JumpHost", "Reach", "Site", "load_reach", "parse_allow", "pin_names", "resolve_names"]

_HOST_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]{20,}")
_ALLOW_FIELDS = {"to", "service", "proto", "ports", "direction", "resolve", "note"}
_SERVICES = {"dns": ("any", (53,)), "dhcp": ("udp", (67, 68, 546, 547))}


@dataclass(frozen=True)
class JumpHost:
    """A bastion from ``jump_hosts``: reached directly, its key pinned, its own credentials."""

    name: str
    address: str
    port: int
    host_key: str
    credentials: CredentialsSpec

    def hop(self) -> Hop:
        return Hop(name=self.name, address=self.address, port=self.port, host_key=self.host_key,
                   username=self.credentials.username)


@dataclass(frozen=True)
class Site:
    """A network segment: its targets share a jump chain, allow-list entries and (scale-out) a worker queue."""

    name: str
    jump: tuple[str, ...] = ()
    allow: tuple[AllowRule, ...] = ()


@dataclass(frozen=True)
class Reach:
    """The parsed ``sites``, ``jump_hosts`` and ``tags`` sections."""

    sites: dict[str, Site]
    jump_hosts: dict[str, JumpHost]
    tag_allow: dict[str, tuple[AllowRule, ...]]

    def site(self, node: Node) -> Site:
        """The declared site ``node`` names; a typo lists the declared ones."""
        name = node.str_(pattern=INVENTORY_NAME, what="site name")
        if name not in self.sites:
            known = ", ".join(sorted(self.sites)) or "none declared"
            raise node.error(f"site {name!r} is not declared under sites: (known: {known})")
        return self.sites[name]

    def chain(self, node: Node) -> tuple[JumpHost, ...]:
        """A ``jump:`` list as jump hosts, outermost first; each name must be declared and appear once."""
        out: list[JumpHost] = []
        for element in node.elements():
            name = element.str_(pattern=INVENTORY_NAME, what="jump host name")
            if name not in self.jump_hosts:
                known = ", ".join(sorted(self.jump_hosts)) or "none declared"
                raise element.error(f"jump host {name!r} is not declared under jump_hosts: (known: {known})")
            if any(j.name == name for j in out):
                raise element.error(f"jump host {name!r} appears twice in one chain")
            out.append(self.jump_hosts[name])
        return tuple(out)

    def site_chain(self, site: Site) -> tuple[JumpHost, ...]:
        return tuple(self.jump_hosts[name] for name in site.jump)

    def tag_rules(self, tags: Iterable[str]) -> tuple[AllowRule, ...]:
        return tuple(rule for tag in tags for rule in self.tag_allow.get(tag, ()))


def load_reach(root: Node, base: Path) -> Reach:
    """Parse the three sections of the inventory's ``root`` mapping (each optional)."""
    jump_hosts: dict[str, JumpHost] = {}
    for name, node in _named(root.child("jump_hosts"), "jump host"):
        node.mapping(allowed={"address", "port", "host_key", "credentials"},
                     required={"address", "host_key", "credentials"})
        port = node.get("port")
        jump_hosts[name] = JumpHost(
            name=name, address=node.child("address").address_or_hostname(),
            port=port.int_(minimum=1, maximum=65535) if port else 22,
            host_key=node.child("host_key").str_(pattern=_HOST_KEY, what='host key ("ssh-ed25519 AAAA...")'),
            credentials=parse_credentials(node.child("credentials"), base))
    partial = Reach(sites={}, jump_hosts=jump_hosts, tag_allow={})
    sites: dict[str, Site] = {}
    for name, node in _named(root.child("sites"), "site"):
        node.mapping(allowed={"jump", "allow", "description"})
        chain = partial.chain(node.child("jump"))
        sites[name] = Site(name=name, jump=tuple(j.name for j in chain),
                           allow=parse_allow(node.child("allow"), f"site {name}"))
    tag_allow: dict[str, tuple[AllowRule, ...]] = {}
    for name, node in _named(root.child("tags"), "tag"):
        node.mapping(allowed={"allow", "description"})
        tag_allow[name] = parse_allow(node.child("allow"), f"tag {name}")
    return Reach(sites=sites, jump_hosts=jump_hosts, tag_allow=tag_allow)


def parse_allow(node: Node, source: str) -> tuple[AllowRule, ...]:
    """An ``allow:`` list; every entry is checked here, so a bad one fails at load time with file and line."""
    return tuple(_allow_rule(element, source) for element in node.elements())


def _allow_rule(node: Node, source: str) -> AllowRule:
    if not isinstance(node.value, dict):
        raise node.error("an allow entry is a mapping: {to: 10.0.0.53, proto: udp, ports: [53]} or {service: dns}")
    node.mapping(allowed=_ALLOW_FIELDS)
    service_node, to_node = node.get("service"), node.get("to")
    if (service_node is None) == (to_node is None):
        raise node.error("give exactly one of 'to' (addresses, networks or DNS names) or 'service' (dns, dhcp)")
    direction = node.opt_str("direction", "out")
    if direction not in ("out", "in", "both"):
        raise node.child("direction").error(f"{direction!r} is not one of out, in, both")
    resolve = node.opt_str("resolve", "plan")
    if resolve not in ("plan", "target"):
        raise node.child("resolve").error(
            f"{resolve!r} is not one of plan (resolved and pinned before the plan is shown), target "
            "(resolved on the target when isolating)")
    note = node.opt_str("note")
    if service_node is not None:
        service = service_node.str_()
        if service not in _SERVICES:
            raise service_node.error(f"unknown service {service!r} (known: {', '.join(sorted(_SERVICES))})")
        for key in ("proto", "ports"):
            if node.get(key) is not None:
                raise node.child(key).error(f"'{key}' is implied by service {service} and cannot be changed")
        proto, ports = _SERVICES[service]
        return AllowRule(source=source, service=cast(Literal["dns", "dhcp"], service),
                         protocol=cast(Literal["tcp", "udp", "any"], proto), ports=ports,
                         direction=cast(Literal["out", "in", "both"], direction),
                         resolve=cast(Literal["plan", "target"], resolve), note=note)
    assert to_node is not None
    addresses, names = _destinations(to_node)
    proto = node.opt_str("proto", "any")
    if proto not in ("tcp", "udp", "any"):
        raise node.child("proto").error(f"{proto!r} is not one of tcp, udp, any")
    ports = _ports(node.get("ports"))
    if ports and proto == "any":
        raise node.child("ports").error("ports need proto: tcp or proto: udp")
    return AllowRule(source=source, to=addresses, names=names,
                     protocol=cast(Literal["tcp", "udp", "any"], proto), ports=ports,
                     direction=cast(Literal["out", "in", "both"], direction),
                     resolve=cast(Literal["plan", "target"], resolve), note=note)


def _destinations(node: Node) -> tuple[tuple[str, ...], tuple[str, ...]]:
    elements = [node] if isinstance(node.value, (str, int)) else list(node.elements())
    if not elements:
        raise node.error("'to' needs at least one address, network or DNS name")
    addresses: list[str] = []
    names: list[str] = []
    for element in elements:
        text = element.str_()
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            names.append(element.address_or_hostname())
            continue
        if net.prefixlen == 0:
            raise element.error(f"{text!r} allows every address: that would undo the isolation")
        addresses.append(str(net.network_address) if net.num_addresses == 1 else str(net))
    return tuple(addresses), tuple(names)


def _ports(node: Node | None) -> tuple[int, ...]:
    if node is None:
        return ()
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return (node.int_(minimum=1, maximum=65535),)
    return tuple(element.int_(minimum=1, maximum=65535) for element in node.elements())


def _named(node: Node, what: str) -> list[tuple[str, Node]]:
    out = []
    for name, child in node.items():
        if not isinstance(name, str) or not INVENTORY_NAME.fullmatch(name):
            raise child.error(f"{name!r} is not a valid {what} name (letters, digits, '.', '_', '-')")
        out.append((name, child))
    return out


Resolver = Callable[[str], Sequence[str]]


def agent_source(address: str, port: int, jump: Sequence[Hop] = ()) -> tuple[str, str] | None:
    """The address a target sees the agent's sessions come from, and how it was found, without contacting it.

    Why: blocking that address on a device cuts the agent off the device it is changing (and every later
    release), so it is a protected address even when ``management`` does not list it. Behind jump hosts it is
    the innermost hop's address; otherwise the kernel's route lookup for ``address`` — a UDP socket "connected"
    to it sends no packet. None when there is no route (the connection would fail anyway)."""
    if jump:
        return jump[-1].address, f"jump host {jump[-1].name}"
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, port or 22))
            return str(sock.getsockname()[0]), "the agent's own address on the route to it"
    except OSError:
        return None


def _system_resolver(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InputError(f"allow-list name {name!r} does not resolve: {exc.strerror}") from None
    return sorted({str(info[4][0]) for info in infos})


def resolve_names(rules: Iterable[AllowRule], resolver: Resolver | None = None) -> dict[str, list[str]]:
    """The read-only resolve step for allow-lists, per name: each DNS name of a ``resolve: plan`` rule and the
    addresses it resolves to here — the planner journals them with the intent (``allow_pins``), so the plan shows
    and the connector sends exactly those (a worker of the target's site runs this where it has a site: its
    resolver is the one that matters). A name that does not resolve refuses the plan (:class:`InputError`)."""
    lookup = resolver or _system_resolver
    out: dict[str, list[str]] = {}
    for rule in rules:
        if not (rule.names and rule.resolve == "plan"):
            continue
        for name in rule.names:
            if name not in out:
                found = sorted(set(lookup(name)))
                if not found:
                    raise InputError(f"allow-list name {name!r} ({rule.source}) resolved to nothing")
                out[name] = found
    return out


def pin_names(rules: Iterable[AllowRule], resolver: Resolver | None = None) -> tuple[AllowRule, ...]:
    """The read-only resolve step for allow-lists: names of ``resolve: plan`` rules become pinned addresses.

    Runs before the plan is shown, where the target's credentials live (the site worker, or the agent), so the
    plan displays exactly the addresses the connector sends. ``resolve: target`` rules are left to the connector.
    A name that does not resolve refuses the plan (:class:`InputError`): isolating without the flow the operator
    asked to keep could cut a resolver or the EDR channel.
    """
    lookup = resolver or _system_resolver
    out = []
    for rule in rules:
        if not (rule.names and rule.resolve == "plan"):
            out.append(rule)
            continue
        found = [addr for name in rule.names for addr in lookup(name)]
        if not found:
            raise InputError(f"allow-list names {', '.join(rule.names)} ({rule.source}) resolved to nothing")
        out.append(replace(rule, to=tuple(dict.fromkeys((*rule.to, *found)))))
    return tuple(out)


def refuse_old_forms(node: Node, hints: dict[str, str]) -> None:
    """Name the field to write instead of a renamed or other-tool one (``bastion`` → ``jump``)."""
    if not isinstance(node.value, dict):
        return
    for key in node.value:
        hint = hints.get(str(key).lower())
        if hint:
            raise node.child(key).error(f"unknown field {key!r}: {hint}")

