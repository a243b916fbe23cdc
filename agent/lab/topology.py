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
    "MAX_FLEET",
    "MAX_SITES",
    "MGMT_ADDRESS",
    "OUTSIDE_CIDR",
    "SITES_CIDR",
    "SUDO_ACCOUNT",
    "SUDO_UID",
    "SWITCH",
    "HostSpec",
    "LabHost",
    "fleet_names",
    "max_fleet",
    "namespace_name",
    "observer_host",
    "site_names",
    "site_of",
    "specs",
    "switch_port_name",
    "validate_prefix",
    "worker_host",
]

LAN_CIDR = "10.77.0.0/24"
SITES_CIDR = "10.77.16.0/20"  # `lab up --sites K`: site k at 10.77.(16+k).0/24
OUTSIDE_CIDR = "10.77.1.0/24"
LAN_GATEWAY = "10.77.0.1"
OUTSIDE_GATEWAY = "10.77.1.1"
DMZ_GATEWAY = "10.77.2.1"
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
    login: str = "root"  # "sudo": sshd refuses root; the agent logs in as SUDO_ACCOUNT and uses sudo -n / doas -n
    segment: str = "lan"  # "lan" (the bridge), "outside" (fw eth1), "dmz" (fw eth2: only via fw), "siteK" (wkK)


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
    login: str = "root"


HOSTS: dict[str, HostSpec] = {
    "fw": HostSpec("fw", LAN_GATEWAY, (("eth0", f"{LAN_GATEWAY}/24"), ("eth1", f"{OUTSIDE_GATEWAY}/24"),
                                       ("eth2", f"{DMZ_GATEWAY}/24")),
                   gateway=None, sshd=True, listener=False, router=True),
    "mgmt": HostSpec("mgmt", MGMT_ADDRESS, (("eth0", f"{MGMT_ADDRESS}/24"),), LAN_GATEWAY, sshd=False,
                     listener=False),
    "victim": HostSpec("victim", "10.77.0.20", (("eth0", "10.77.0.20/24"),), LAN_GATEWAY, sshd=True, listener=True),
    "peer": HostSpec("peer", "10.77.0.30", (("eth0", "10.77.0.30/24"),), LAN_GATEWAY, sshd=True, listener=True),
    "legacy": HostSpec("legacy", "10.77.0.40", (("eth0", "10.77.0.40/24"),), LAN_GATEWAY, sshd=True,
                       listener=True, nft=False),
    # .50 is the Samba DC of `lab up --with-ad` (agent.lab.ad.DC_ADDRESS): a host there hid the DC from the LAN
    "sudohost": HostSpec("sudohost", "10.77.0.60", (("eth0", "10.77.0.60/24"),), LAN_GATEWAY, sshd=True,
                         listener=True, login="sudo"),
    "attacker": HostSpec("attacker", "10.77.1.130", (("eth0", "10.77.1.130/24"),), OUTSIDE_GATEWAY, sshd=False,
                         listener=True, segment="outside"),
    # Behind fw on its own link and with no route beyond it: only fw (the bastion, ProxyJump) reaches it.
    "dmz": HostSpec("dmz", "10.77.2.10", (("eth0", "10.77.2.10/24"),), None, sshd=True, listener=True,
                    segment="dmz"),
}
LISTEN_PORT = 8080
MAX_FLEET = 99  # fleet hosts h01..h99 at 10.77.0.101-199 (the LAN /24 keeps .1-.100 for the named hosts)
MAX_SITES = 9  # `lab up --sites K`: site k is 10.77.(16+k).0/24, its worker wkK is 10.77.0.(80+k) on the LAN
MAX_PER_SITE = 99  # fleet hosts of one site at 10.77.(16+k).101-199


def max_fleet(sites: int = 0) -> int:
    return MAX_PER_SITE * sites if sites else MAX_FLEET


def fleet_names(count: int, sites: int = 0) -> list[str]:
    """Names of ``count`` extra, identical Linux hosts (``agent lab up --hosts N``): h01, h02, ... (h100 on)."""
    if not 0 <= sites <= MAX_SITES:
        raise ValueError(f"--sites {sites}: between 0 and {MAX_SITES}")
    if not 0 <= count <= max_fleet(sites):
        raise ValueError(f"--hosts {count}: between 0 and {max_fleet(sites)}"
                         + (f" ({MAX_PER_SITE} per site)" if sites else " (more with --sites K)"))
    return [f"h{i:02d}" for i in range(1, count + 1)]


def site_names(sites: int) -> list[str]:
    """The lab's site names (inventory ``sites:``): site1, site2, ..."""
    return [f"site{k}" for k in range(1, sites + 1)]


def site_of(fleet: int, sites: int) -> dict[str, str]:
    """Which site each fleet host is at: contiguous blocks, as even as possible (h01-h34 site1, ...)."""
    names = fleet_names(fleet, sites)
    if not sites:
        return {}
    out: dict[str, str] = {}
    per, extra = divmod(len(names), sites)
    i = 0
    for k in range(1, sites + 1):
        for _ in range(per + (1 if k <= extra else 0)):
            out[names[i]] = f"site{k}"
            i += 1
    return out


def worker_host(site: str) -> str:
    """The lab host a site's worker runs on (``wk1`` for site1): on the LAN and on the site's own segment."""
    return "wk" + site.removeprefix("site")


def observer_host(site: str) -> str:
    """The lab host on a site's segment that is *not* a management address (``obs1`` for site1, at
    10.77.(16+k).2): a neighbour on the same segment, from which a probe proves a contained host unreachable
    (its TCP connects must time out) while the worker's management SSH still gets in. It runs sshd (and nothing
    that listens otherwise) so the product's own outside probe (ssh_linux ``options.probe_from``) can log in to
    it from the site's worker and probe from there too — the tests compare that verdict with their own."""
    return "obs" + site.removeprefix("site")


def specs(fleet: int = 0, sites: int = 0) -> dict[str, HostSpec]:
    """The named hosts plus ``fleet`` extra sshd+nft+listener hosts, for outbreak-sized rehearsals.

    Without sites they sit on the LAN. With ``sites`` K they are split over K site segments
    (10.77.(16+k).0/24, a bridge each) that nothing routes to: only the site's worker host ``wkK``, which has a
    leg on the LAN (to reach the journal and the broker on mgmt) and one on the segment, reaches them — so a
    test that contains them from mgmt through the workers proves the routing, not just the queues. Each segment
    also has an observer ``obsK`` (sshd only, not a management address) to probe its hosts from outside.
    """
    out = dict(HOSTS)
    where = site_of(fleet, sites)
    seen: dict[str, int] = {}
    for i, name in enumerate(fleet_names(fleet, sites), 1):
        site = where.get(name)
        if site is None:
            address = f"10.77.0.{100 + i}"
            out[name] = HostSpec(name, address, (("eth0", f"{address}/24"),), LAN_GATEWAY, sshd=True,
                                 listener=True)
            continue
        k = int(site.removeprefix("site"))
        seen[site] = seen.get(site, 0) + 1
        address = f"10.77.{16 + k}.{100 + seen[site]}"
        out[name] = HostSpec(name, address, (("eth0", f"{address}/24"),), None, sshd=True, listener=True,
                             segment=site)
    for k, site in enumerate(site_names(sites), 1):
        lan = f"10.77.0.{80 + k}"
        out[worker_host(site)] = HostSpec(worker_host(site), lan, (("eth0", f"{lan}/24"),
                                                                   ("eth1", f"10.77.{16 + k}.1/24")),
                                          LAN_GATEWAY, sshd=False, listener=False, segment="lan")
        seen_from = f"10.77.{16 + k}.2"  # no route, no listener: a vantage point on the segment (sshd: probe_from)
        out[observer_host(site)] = HostSpec(observer_host(site), seen_from, (("eth0", f"{seen_from}/24"),), None,
                                            sshd=True, listener=False, segment=site)
    return out
SUDO_ACCOUNT = "svcagent"  # the only login of hosts with login="sudo" (uid SUDO_UID, in their mount namespace)
SUDO_UID = 47990


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
