"""Where a plan's subjects land: a host, account or address named by the user resolved to inventory entries, each
with its address pinned (DNS resolved once, before anything is applied), and protected assets refused. Kept apart
from :mod:`agent.plan` because deciding *which* targets a request touches is its own job, separate from building
the connector actions for them; nothing here connects anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from agent.errors import GuardRefused, InputError
from agent.inventory import HostEntry, Inventory
from agent.reach import agent_source
from agent.runbook import Runbook
from agent.validate import inventory_name, ip_or_cidr, username

__all__ = ["pin", "resolve_targets"]


def resolve_targets(inv: Inventory, kind: str, value: str, runbook: Runbook, devices: Sequence[str] | None,
                    directory: str | None, notes: list[str]) -> list[tuple[HostEntry, str, dict[str, Any]]]:
    """The inventory entries (with pinned addresses and extra connector arguments) one subject of ``kind``
    names; refuses protected ones. ``notes``: the plan's notes, for hosts left out rather than refused."""
    if kind == "user_hosts":
        username(value, field="user")
        out: list[tuple[HostEntry, str, dict[str, Any]]] = []
        for host in inv.hosts_of_user(value):
            reason = inv.protected_reason(host)
            if reason:
                notes.append(f"sessions of {value} on {host.name} not ended: {reason}")
                continue
            out.append((host, pin(host), {"user": _local_user(host, value)}))
        return out
    if kind == "host":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            inventory_name(value, field="host")
        entry = inv.host(value)
        inv.check_not_protected(entry)
        if runbook.os and entry.os and entry.os not in runbook.os:
            raise GuardRefused(f"refused: runbook {runbook.name} supports {', '.join(runbook.os)}, "
                               f"{entry.name} runs {entry.os}")
        address = pin(entry)
        inv.check_not_protected(entry, address)
        return [(entry, address, {})]
    if kind == "account":
        username(value, field="user")
        entry = inv.directory(directory)
        why = inv.account_protected_reason(value, entry)
        if why:
            raise GuardRefused(f"refused: {why}; it is protected, nothing was touched")
        return [(entry, pin(entry), {"account": value})]
    net = ip_or_cidr(value, field="address")
    reason = inv.address_protected_reason(net)
    if reason:
        raise GuardRefused(f"refused: {reason}; nothing was touched")
    targets = [inv.device(d) for d in devices] if devices else inv.edges()
    if not targets:
        raise InputError("no device to block on: name one with --on DEVICE or mark devices 'edge: true'")
    found: list[tuple[HostEntry, str, dict[str, Any]]] = []
    for dev in targets:
        inv.check_not_protected(dev)
        address = pin(dev)
        protected = [*(f"{m}/{32 if ':' not in m else 128}" for m in inv.management),
                     *(str(c) for c in inv.protected_cidrs), address]
        try:
            own = ipaddress.ip_address(address)
            if own.version == net.version and own in net:
                raise GuardRefused(f"refused: {net} contains {dev.name}'s own address {own}")
        except ValueError:
            pass
        source = agent_source(address, dev.port or 22, dev.jump)
        if source is not None:
            src = ipaddress.ip_address(source[0])
            if src.version == net.version and src in net:
                raise GuardRefused(f"refused: {net} contains {src}, where {dev.name} sees the agent's sessions "
                                   f"come from ({source[1]}); blocking it would cut the agent off the device; "
                                   "nothing was touched")
            protected.append(str(src))
        found.append((dev, address, {"addresses": [str(net) if net.prefixlen != net.max_prefixlen
                                                   else str(net.network_address)],
                                     "protected": protected}))
    return found

def pin(entry: HostEntry) -> str:
    """Resolve a DNS name once, before anything is applied, and use that address from then on."""
    try:
        return str(ipaddress.ip_address(entry.address))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(entry.address, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"{entry.name}: cannot resolve {entry.address!r}: {exc.strerror}") from None
    return str(infos[0][4][0])


def _local_user(host: HostEntry, account: str) -> str:
    """The user as ``host``'s inventory entry spells it: ``JDOE@lab.test`` or ``LAB\\jdoe`` is ``jdoe`` there (the
    host-side kill needs the host's own login name, not the directory's other forms)."""
    short = account.split("\\")[-1].split("@")[0].lower()
    return next((u for u in host.users if u.split("\\")[-1].split("@")[0].lower() == short), account)
