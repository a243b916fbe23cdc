"""The lab's fixed topology: which hosts exist, their addresses and what runs on them.

Why constants: the probes, the generated inventory and the tests all talk about the same named hosts, so the
topology is data in one place. The LAN (10.77.0.0/24) hangs off a bridge in a switch namespace; the attacker sits
outside (10.77.1.0/24) behind ``fw``, which routes between the two. Nothing routes anywhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BRIDGE",
    "HOSTS",
    "LAN_CIDR",
    "LISTEN_PORT",
    "MGMT_ADDRESS",
    "OUTSIDE_CIDR",
    "SWITCH",
    "HostSpec",
    "LabHost",
    "namespace_name",
    "switch_port_name",
    "validate_prefix",
]

LAN_CIDR = "10.77.0.0/24"
OUTSIDE_CIDR = "10.77.1.0/24"
LAN_GATEWAY = "10.77.0.1"
OUTSIDE_GATEWAY = "10.77.1.1"
MGMT_ADDRESS = "10.77.0.10"
SWITCH = "sw"
BRIDGE = "br0"
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")


@dataclass(frozen=True)
class HostSpec:
    """What one lab host is: its interfaces (name → address/len), its gateway and the daemons it runs."""

    name: str
    address: str
    interfaces: tuple[tuple[str, str], ...]
    gateway: str | None
    sshd: bool
    listener: bool
    nft: bool = True
    router: bool = False


@dataclass(frozen=True)
class LabHost:
    """A running lab host as callers see it: name, network namespace, primary address and capabilities."""

    name: str
    namespace: str
    address: str
    has_sshd: bool
    has_nft: bool
    has_listener: bool
    addresses: tuple[str, ...]


HOSTS: dict[str, HostSpec] = {
    "fw": HostSpec("fw", LAN_GATEWAY, (("eth0", f"{LAN_GATEWAY}/24"), ("eth1", f"{OUTSIDE_GATEWAY}/24")),
                   gateway=None, sshd=True, listener=False, router=True),
    "mgmt": HostSpec("mgmt", MGMT_ADDRESS, (("eth0", f"{MGMT_ADDRESS}/24"),), LAN_GATEWAY, sshd=False,
                     listener=False),
    "victim": HostSpec("victim", "10.77.0.20", (("eth0", "10.77.0.20/24"),), LAN_GATEWAY, sshd=True, listener=True),
    "peer": HostSpec("peer", "10.77.0.30", (("eth0", "10.77.0.30/24"),), LAN_GATEWAY, sshd=True, listener=True),
    "legacy": HostSpec("legacy", "10.77.0.40", (("eth0", "10.77.0.40/24"),), LAN_GATEWAY, sshd=True,
                       listener=True, nft=False),
    "attacker": HostSpec("attacker", "10.77.1.130", (("eth0", "10.77.1.130/24"),), OUTSIDE_GATEWAY, sshd=False,
                         listener=True),
}
LISTEN_PORT = 8080


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if usable in namespace and interface names (≤15 chars with the longest host name)."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"lab prefix {prefix!r} is invalid: use 1-6 lowercase letters/digits, starting with a letter")
    return prefix


def namespace_name(prefix: str, host: str) -> str:
    """Network namespace of ``host`` in the lab called ``prefix`` (``cal-victim``; the switch is ``cal-sw``)."""
    return f"{prefix}-{host}"


def switch_port_name(prefix: str, host: str) -> str:
    """Switch-side veth name for ``host`` (unique per prefix, ≤15 chars: ``cal-victim``)."""
    return f"{prefix}-{host}"[:15]
