"""The inventory: targets (hosts, devices, directories), protected assets and management addresses.

Protected assets are checked here, in one place, before any connection is opened (lesson 4 in ARCHITECTURE.md:
allow-lists ignored or too coarse). Names are resolved and pinned to addresses at load/plan time so isolation
can never cut the path to a name server it still needs (lesson 1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.datasets import DataSets, load_datasets, refuse_tag_forms
from agent.errors import GuardRefused, NotFound
from agent.reach import JumpHost, Reach, Site, load_reach, parse_allow, refuse_old_forms
from agent.secrets import CredentialsSpec, parse_credentials
from agent.validate import INVENTORY_NAME
from agent.yamlsrc import Node, load_yaml
from connectors.types import AllowRule, Hop, Target

__all__ = ["HostEntry", "Inventory", "load_inventory"]

_HOST_FIELDS = {"address", "os", "connector", "port", "credentials", "host_key", "tags", "data", "residents",
                "dataset", "options", "users", "site", "jump", "allow"}
_DEVICE_FIELDS = {"address", "device_type", "edge", "port", "credentials", "host_key", "tags", "options", "site",
                  "jump", "connector"}
_DIR_FIELDS = {"address", "port", "credentials", "options", "default", "site", "connector"}
_SECTION = {"host": "hosts", "device": "devices", "directory": "directories"}
_SECTIONS = {"management", "protected", "defaults", "sites", "jump_hosts", "tags", "datasets", "hosts", "devices",
             "directories"}
_HOST_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]{20,}")
# Field names other tools (or earlier drafts) use, answered with the one this schema reads.
_OTHER_FORMS = {
    "proxyjump": "write jump: [NAME, ...] (outermost first; jump hosts are declared under jump_hosts:)",
    "proxy_jump": "write jump: [NAME, ...] (outermost first; jump hosts are declared under jump_hosts:)",
    "bastion": "write jump: [NAME] (jump hosts are declared under jump_hosts:)",
    "jump_host": "write jump: [NAME] (jump hosts are declared under jump_hosts:)",
    "jumphost": "write jump: [NAME] (jump hosts are declared under jump_hosts:)",
    "via": "write jump: [NAME] (jump hosts are declared under jump_hosts:)",
    "allowlist": "write allow: [{to: ADDRESS, proto: udp, ports: [53]}, {service: dns}]",
    "allow_list": "write allow: [{to: ADDRESS, proto: udp, ports: [53]}, {service: dns}]",
    "whitelist": "write allow: [{to: ADDRESS, proto: udp, ports: [53]}, {service: dns}]",
    "keep_open": "write allow: [{to: ADDRESS, proto: udp, ports: [53]}, {service: dns}]",
    "location": "write site: NAME (sites are declared under sites:)",
    "segment": "write site: NAME (sites are declared under sites:)",
    "people": "write residents: {MA: 1225, NH: 12} (people per state)",
    "affected": "write residents: {MA: 1225, NH: 12} (people per state)",
    "states": "write residents: {MA: 1225, NH: 12} (people per state; null = count unknown)",
    "data_set": "write dataset: NAME",
}


@dataclass(frozen=True)
class HostEntry:
    """One inventory entry (host, device or directory) with everything needed to build a Target."""

    name: str
    kind: str  # "host" | "device" | "directory"
    address: str
    connector: str
    os: str = ""
    port: int | None = None
    credentials: CredentialsSpec | None = None
    host_key: str | None = None
    tags: tuple[str, ...] = ()
    site: str | None = None  # a declared site: its worker holds the credentials, its jump chain and allow-list apply
    jump: tuple[Hop, ...] = ()  # ProxyJump chain, outermost first (own ``jump``, else the site's)
    allow: tuple[AllowRule, ...] = ()  # flows isolation keeps open: connector defaults + site + tags + own
    data: tuple[str, ...] = ()
    residents: tuple[str, ...] = ()
    resident_counts: Mapping[str, int | None] = field(default_factory=dict)  # state -> people (None: unknown)
    dataset: str | None = None  # systems holding copies of the same records share one name: counted once
    users: tuple[str, ...] = ()  # accounts known to log in here: their sessions are ended with the account
    options: Mapping[str, Any] = field(default_factory=dict)
    edge: bool = False
    line: int | None = None

    def target(self, address: str | None = None) -> Target:
        kind = {"host": "host", "device": "device", "directory": "account"}[self.kind]
        return Target(name=self.name, kind=kind, address=address or self.address,  # type: ignore[arg-type]
                      connector=self.connector, os=self.os, port=self.port, host_key=self.host_key,
                      tags=self.tags, options=dict(self.options), site=self.site, jump=self.jump, allow=self.allow)


@dataclass
class Inventory:
    path: Path
    management: tuple[str, ...]
    hosts: dict[str, HostEntry]
    devices: dict[str, HostEntry]
    directories: dict[str, HostEntry]
    protected_hosts: frozenset[str]
    protected_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    protected_accounts: frozenset[str]
    sites: dict[str, Site] = field(default_factory=dict)
    jump_hosts: dict[str, JumpHost] = field(default_factory=dict)

    # -- lookups --------------------------------------------------------------------------------------------
    def host(self, name_or_address: str) -> HostEntry:
        """Find a host by inventory name or by address; unknown names list what exists."""
        entry = self.hosts.get(name_or_address)
        if entry:
            return entry
        for candidate in self.hosts.values():
            if candidate.address == name_or_address:
                return candidate
        known = ", ".join(sorted(self.hosts)) or "none"
        raise NotFound(f"host {name_or_address!r} is not in the inventory {self.path} (known hosts: {known})")

    def device(self, name: str) -> HostEntry:
        if name in self.devices:
            return self.devices[name]
        known = ", ".join(sorted(self.devices)) or "none"
        raise NotFound(f"device {name!r} is not in the inventory {self.path} (known devices: {known})")

    def directory(self, name: str | None = None) -> HostEntry:
        if name:
            if name in self.directories:
                return self.directories[name]
            raise NotFound(f"directory {name!r} is not in the inventory (known: "
                           f"{', '.join(sorted(self.directories)) or 'none'})")
        if not self.directories:
            raise NotFound(f"no directories (Active Directory) are configured in {self.path}")
        defaults = [d for d in self.directories.values() if d.options.get("default")]
        return defaults[0] if defaults else next(iter(self.directories.values()))

    def hosts_of_user(self, account: str) -> list[HostEntry]:
        """Hosts whose inventory entry lists ``account`` (by short name, case-insensitive) under ``users``."""
        short = account.split("\\")[-1].split("@")[0].lower()
        return [h for h in self.hosts.values()
                if short in {u.split("\\")[-1].split("@")[0].lower() for u in h.users}]

    def edges(self) -> list[HostEntry]:
        return [d for d in self.devices.values() if d.edge]

    # -- guards ---------------------------------------------------------------------------------------------
    def protected_reason(self, entry: HostEntry, address: str | None = None) -> str | None:
        """Why ``entry`` must not be touched, or None. Checked before any connection."""
        if entry.name in self.protected_hosts:
            return f"{entry.name} is listed in protected.hosts"
        addr = address or entry.address
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return None
        if str(ip) in self.management:
            return f"{entry.name} ({ip}) is a management address of the agent"
        for net in self.protected_cidrs:
            if ip.version == net.version and ip in net:
                return f"{entry.name} ({ip}) is inside protected range {net}"
        return None

    def check_not_protected(self, entry: HostEntry, address: str | None = None) -> None:
        reason = self.protected_reason(entry, address)
        if reason:
            raise GuardRefused(f"refused: {reason}; nothing was touched")

    def address_protected_reason(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
        """Why blocking ``net`` would hit something protected (management or protected CIDRs)."""
        for mgmt in self.management:
            ip = ipaddress.ip_address(mgmt)
            if ip.version == net.version and ip in net:
                return f"{net} contains the management address {ip}"
        for prot in self.protected_cidrs:
            if prot.version == net.version and net.overlaps(prot):
                return f"{net} overlaps protected range {prot}"
        return None

    def account_protected(self, account: str) -> bool:
        short = account.split("\\")[-1].split("@")[0].lower()
        return short in {a.lower() for a in self.protected_accounts} or account.lower() in {
            a.lower() for a in self.protected_accounts}

    def account_protected_reason(self, account: str, directory: HostEntry | None = None) -> str | None:
        """Why ``account`` must never be changed, decided before connecting: listed in protected.accounts, or
        the agent's own bind account on ``directory`` (in any form: name, UPN, DOMAIN\\name, DN)."""
        if self.account_protected(account):
            return f"account {account!r} is listed in protected.accounts"
        bind = directory.credentials.username if directory and directory.credentials else ""
        if bind and _same_account(account, bind):
            return f"account {account!r} is the agent's own bind account on {directory.name}"  # type: ignore[union-attr]
        return None


def _same_account(a: str, b: str) -> bool:
    """Whether two typed references certainly name the same account (same short name, or same DN)."""
    from connectors.account_names import parse_account_name
    try:
        pa, pb = parse_account_name(a), parse_account_name(b)
    except ValueError:
        return a.lower() == b.lower()
    if pa.kind == pb.kind == "dn":
        return "".join(pa.value.lower().split()) == "".join(pb.value.lower().split())
    if pa.kind == "dn" or pb.kind == "dn":  # a DN's first RDN value is the CN, not the logon name
        return False
    return bool(pa.short) and pa.short == pb.short


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate the inventory; every error names file, line and field."""
    inv_path = Path(path)
    root = load_yaml(inv_path).root()
    refuse_old_forms(root, {"jump_servers": "write jump_hosts:", "bastions": "write jump_hosts:",
                            "locations": "write sites:", "data_sets": "write datasets:"})
    root.mapping(allowed=_SECTIONS)
    mgmt = root.child("management").mapping(allowed={"addresses"})
    management = tuple(n.ip_address() for n in mgmt.child("addresses").elements())
    prot = root.child("protected").mapping(allowed={"hosts", "cidrs", "accounts"})
    sections = _Sections(base=inv_path.resolve().parent, defaults=root.child("defaults").mapping(),
                         reach=load_reach(root, inv_path.resolve().parent),
                         datasets=load_datasets(root.child("datasets")))
    hosts = {name: _entry(node, name, "host", sections) for name, node in _named(root.child("hosts"))}
    devices = {name: _entry(node, name, "device", sections) for name, node in _named(root.child("devices"))}
    directories = {name: _entry(node, name, "directory", sections)
                   for name, node in _named(root.child("directories"))}
    protected_hosts = frozenset(prot.child("hosts").str_list(pattern=INVENTORY_NAME, what="host name"))
    return Inventory(
        path=inv_path,
        management=management,
        hosts=hosts,
        devices=devices,
        directories=directories,
        protected_hosts=protected_hosts,
        protected_cidrs=tuple(ipaddress.ip_network(n.cidr()) for n in prot.child("cidrs").elements()),
        protected_accounts=frozenset(prot.child("accounts").str_list()),
        sites=sections.reach.sites,
        jump_hosts=sections.reach.jump_hosts,
    )


@dataclass(frozen=True)
class _Sections:
    """What every entry is read against: the file's folder, connector defaults, sites/jump hosts/tags, data sets."""

    base: Path
    defaults: Node
    reach: Reach
    datasets: DataSets


def _named(node: Node) -> list[tuple[str, Node]]:
    out = []
    for name, child in node.items():
        if not INVENTORY_NAME.fullmatch(name):
            raise child.error(f"{name!r} is not a valid name (letters, digits, '.', '_', '-')")
        out.append((name, child))
    return out


def _merge(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _connector_of(node: Node, kind: str) -> tuple[str, str]:
    """``(connector, os)`` of an entry: its own ``connector``, else the one the installed connectors declare for
    its section (hosts: for its ``os``). The inventory names no connector itself (docs/architecture.md)."""
    from agent.registry import default_connector, host_os_names

    section = _SECTION[kind]
    os_node = node.get("os") if kind == "host" else None
    os_name = os_node.str_() if os_node else ""
    conn_node = node.get("connector")
    if conn_node is not None:
        return conn_node.str_(pattern=INVENTORY_NAME, what="connector name"), os_name
    if kind == "host":
        if os_node is None:
            raise node.error(f"needs 'os' ({', '.join(host_os_names()) or 'none installed'}) or 'connector'")
        connector = default_connector(section, os_name)
        if connector is None:
            raise os_node.error(f"unknown os {os_name!r} (known: {', '.join(host_os_names()) or 'none'}); "
                                "or name a connector explicitly")
        return connector, os_name
    connector = default_connector(section)
    if connector is None:
        raise node.error(f"no installed connector serves {section}: name one with 'connector:'")
    return connector, ""


def _entry(node: Node, name: str, kind: str, sections: _Sections) -> HostEntry:
    allowed = {"host": _HOST_FIELDS, "device": _DEVICE_FIELDS, "directory": _DIR_FIELDS}[kind]
    refuse_old_forms(node, _OTHER_FORMS)
    node.mapping(allowed=allowed, required={"address"})
    connector, os_name = _connector_of(node, kind)
    # defaults are keyed by connector; the host's own values win, except allow-lists, which add up
    own = dict(node.value)
    dflt = sections.defaults.get(connector)
    default_allow: tuple[AllowRule, ...] = ()
    if dflt is not None:
        dflt.mapping()
        default_allow = parse_allow(dflt.child("allow"), f"defaults {connector}")
        own = _merge({k: v for k, v in dflt.value.items() if k != "allow"}, own)
    merged = Node(node.doc, node.at, own)
    cred_node = merged.get("credentials")
    creds = parse_credentials(cred_node, sections.base) if cred_node is not None else None
    site_node = merged.get("site")
    site = sections.reach.site(site_node) if site_node is not None else None
    jump_node = merged.get("jump")
    chain = sections.reach.chain(jump_node) if jump_node is not None else (
        sections.reach.site_chain(site) if site else ())
    if chain:
        if creds is None:
            raise node.error(f"reached through jump host {chain[0].name}: needs its own credentials "
                             f"(or defaults.{connector}.credentials)")
        creds = replace(creds, hops=tuple(j.credentials for j in chain))
    tags_node = merged.child("tags")
    refuse_tag_forms(tags_node)
    tags = tuple(tags_node.str_list())
    allow = (*default_allow, *(site.allow if site else ()), *sections.reach.tag_rules(tags),
             *parse_allow(merged.child("allow"), "host")) if kind == "host" else ()
    dataset = sections.datasets.for_system(merged, name)
    hk = merged.get("host_key")
    opt_node = merged.get("options")
    options = dict(opt_node.mapping().value) if opt_node is not None else {}
    if merged.get("device_type") is not None:  # devices: the dialect (netmiko's name); the connector checks it
        options["device_type"] = merged.child("device_type").str_(pattern=INVENTORY_NAME, what="device_type")
    port = merged.get("port")
    edge = merged.get("edge")
    counts = dict(dataset.residents) if dataset else {}
    return HostEntry(
        name=name,
        kind=kind,
        address=merged.child("address").address_or_hostname(),
        connector=connector,
        os=os_name,
        port=port.int_(minimum=1, maximum=65535) if port else None,
        credentials=creds,
        host_key=hk.str_(pattern=_HOST_KEY, what="host key (\"ssh-ed25519 AAAA...\")") if hk else None,
        tags=tags,
        site=site.name if site else None,
        jump=tuple(j.hop() for j in chain),
        allow=allow,
        data=dataset.data if dataset else (),
        residents=tuple(counts),
        resident_counts=counts,
        dataset=dataset.name if dataset else None,
        users=tuple(merged.child("users").str_list()),
        options=options,
        edge=edge.bool_() if edge else False,
        line=node.line,
    )
