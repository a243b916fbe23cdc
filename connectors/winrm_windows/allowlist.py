"""Flows isolation keeps open on a Windows host besides management, as :class:`~plan.RuleSpec` allow rules.

* DHCP and DNS, by default (``keep_dhcp_dns: false`` turns them off): the resolvers and DHCP servers the host is
  configured with, read from the host when isolating (``Get-DnsClientServerAddress``,
  ``Win32_NetworkAdapterConfiguration.DHCPServer``) — a host whose lease runs out while contained falls off the
  network, and EDR agents resolve their cloud by name. Velociraptor's quarantine keeps both for the same reason.
* The inventory's allow-list (``Target.allow``: connector defaults, site, tags, host), on exactly its protocol and
  ports. Names must be pinned at plan time (``resolve: plan``).
* Domain controllers (``domain_controllers``), when the agent logs on with a domain account over NTLM: the host
  completes that logon by asking a DC (MS-APDS 3.1, Netlogon pass-through), so without them every new connection
  after isolating fails. With Kerberos the host validates the service ticket itself and needs no DC.
* ICMPv6 neighbour discovery (types 133-137) with link-local, multicast and the IPv6 management addresses, when
  managing over IPv6 (RFC 4861: without it the neighbour cache entry for the agent expires and the path dies).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from connectors.errors import InvalidInput
from connectors.types import AllowRule
from connectors.winrm_windows.plan import GROUP, RuleSpec
from connectors.winrm_windows.powershell import validate_network

__all__ = ["DC_TCP_PORTS", "DC_UDP_PORTS", "check_allow_rules", "host_addresses", "keep_rules"]

#: Kerberos 88, RPC endpoint mapper 135, LDAP 389, SMB 445 (Netlogon over named pipes), kpasswd 464, GC 3268 and
#: the dynamic RPC range Netlogon is given by the endpoint mapper.
DC_TCP_PORTS = ("88", "135", "389", "445", "464", "3268", "49152-65535")
DC_UDP_PORTS = ("88", "389", "464")
_NDP_TYPES = (133, 134, 135, 136, 137)


def check_allow_rules(rules: Sequence[AllowRule]) -> None:
    """Refuse, before connecting, allow-list entries this connector cannot express."""
    for rule in rules:
        if rule.resolve == "target" or (rule.names and not rule.to):
            raise InvalidInput(f"allow entry from {rule.source} uses resolve: target ({', '.join(rule.names)}), "
                               "which winrm_windows does not support yet: use resolve: plan so the agent pins the "
                               "addresses", detail={"field": "allow", "source": rule.source})
        for addr in rule.to:
            validate_network(addr, field=f"allow ({rule.source})")


def host_addresses(values: object) -> tuple[str, ...]:
    """IP addresses from host output (untrusted): zone ids dropped, anything that is not an address ignored."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values if isinstance(values, list) else []:
        text = str(v).split("%", 1)[0].strip()
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            continue
    return tuple(dict.fromkeys(out))


def _spec(suffix: str, direction: str, remote: Iterable[str], protocol: str, *, local: Sequence[int] = (),
          rports: Sequence[str] = (), icmp: Sequence[int] = (), what: str = "") -> RuleSpec:
    return RuleSpec(f"{GROUP}-Keep-{suffix}", f"{GROUP}: keep {what or suffix}", direction, "Allow",
                    tuple(remote), protocol, tuple(local), tuple(rports), tuple(icmp))


def keep_rules(allow: Sequence[AllowRule], *, management: Sequence[str], keep_dhcp_dns: bool,
               dns_servers: Sequence[str], dhcp_servers: Sequence[str],
               domain_controllers: Sequence[str]) -> list[RuleSpec]:
    """Allow rules for every flow isolation keeps; names are stable so verify can find them again."""
    specs: list[RuleSpec] = []
    services = {r.service for r in allow if r.service}
    if (keep_dhcp_dns or "dns" in services) and dns_servers:
        specs += [_spec("DNS-UDP-Out", "Outbound", dns_servers, "UDP", rports=("53",), what="DNS to the resolvers"),
                  _spec("DNS-TCP-Out", "Outbound", dns_servers, "TCP", rports=("53",), what="DNS to the resolvers")]
    if keep_dhcp_dns or "dhcp" in services:
        v4 = [a for a in dhcp_servers if ":" not in a]
        specs += [_spec("DHCP-Out", "Outbound", [*v4, "255.255.255.255"], "UDP", rports=("67",), what="DHCP"),
                  _spec("DHCPv6-Out", "Outbound", ["ff02::1:2"], "UDP", rports=("547",), what="DHCPv6")]
        if v4:
            specs.append(_spec("DHCP-In", "Inbound", v4, "UDP", local=(68,), what="DHCP replies"))
        specs.append(_spec("DHCPv6-In", "Inbound", ["fe80::/10"], "UDP", local=(546,), what="DHCPv6 replies"))
    if domain_controllers:
        specs += [_spec("DC-TCP-Out", "Outbound", domain_controllers, "TCP", rports=DC_TCP_PORTS,
                        what="domain controllers (Kerberos, LDAP, Netlogon)"),
                  _spec("DC-UDP-Out", "Outbound", domain_controllers, "UDP", rports=DC_UDP_PORTS,
                        what="domain controllers (Kerberos, LDAP)")]
    v6_mgmt = [m for m in management if ":" in m]
    if v6_mgmt:
        remote = ["fe80::/10", "ff02::/16", *v6_mgmt]
        specs += [_spec("NDP-Out", "Outbound", remote, "ICMPv6", icmp=_NDP_TYPES, what="IPv6 neighbour discovery"),
                  _spec("NDP-In", "Inbound", remote, "ICMPv6", icmp=_NDP_TYPES, what="IPv6 neighbour discovery")]
    n = 0
    for rule in allow:
        if rule.service or not rule.to:
            continue
        n += 1
        protocol = {"tcp": "TCP", "udp": "UDP"}.get(rule.protocol, "Any")
        ports = [str(p) for p in rule.ports]
        what = f"{rule.note or 'allow-list'} ({rule.source})"
        if rule.direction in ("out", "both"):
            specs.append(_spec(f"List{n}-Out", "Outbound", rule.to, protocol, rports=ports, what=what))
        if rule.direction in ("in", "both"):
            specs.append(_spec(f"List{n}-In", "Inbound", rule.to, protocol,
                               local=[int(p) for p in ports], what=what))
    return specs
