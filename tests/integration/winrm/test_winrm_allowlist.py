"""What isolation keeps open besides management: DHCP and DNS by default, the inventory's allow-list, the domain
controllers an NTLM logon of a domain account needs, and IPv6 neighbour discovery when managing over IPv6."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from connectors.errors import Rejected
from connectors.types import AllowRule, ConnectorContext, Credentials, Secret, Target
from connectors.winrm_windows import WinRMWindowsConnector
from tests.doubles.wsman import WindowsHost, WSManDouble
from tests.integration.winrm.conftest import DOMAIN_PASSWORD, DOMAIN_USER


def isolate(conn: WinRMWindowsConnector, target: Target, creds: Credentials, ctx: ConnectorContext) -> None:
    with conn.open(target, creds, ctx) as s:  # type: ignore[attr-defined]
        snap = conn.snapshot(s, "isolate", {})
        assert conn.apply(s, "isolate", {}, snap).changed
        assert conn.verify(s, "isolate", {}).in_effect


class TestDefaults:
    def test_dhcp_and_dns_stay_open_and_nothing_else(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """The host's own resolvers (UDP/TCP 53) and DHCP server (UDP 67, replies to 68) stay reachable, only on
        those ports; everything else, including other resolvers, is blocked (a lease that runs out while contained
        would otherwise drop the host off the network)."""
        isolate(conn, make_target(double), creds, ctx)
        assert host.allows_outbound("10.0.0.53", 53, "UDP") and host.allows_outbound("10.0.0.53", 53, "TCP")
        assert not host.allows_outbound("10.0.0.53", 445) and not host.allows_outbound("8.8.8.8", 53, "UDP")
        assert host.allows_outbound("10.0.0.1", 67, "UDP") and host.allows_outbound("255.255.255.255", 67, "UDP")
        assert host.allows_inbound("10.0.0.1", 68, "UDP") and not host.allows_inbound("10.0.0.1", 445)
        assert not host.allows_outbound("203.0.113.9", 443)

    def test_keep_dhcp_dns_false_closes_them(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """keep_dhcp_dns: false isolates strictly."""
        isolate(conn, make_target(double, keep_dhcp_dns=False), creds, ctx)
        assert not host.allows_outbound("10.0.0.53", 53, "UDP") and not host.allows_outbound("10.0.0.1", 67, "UDP")


class TestInventoryAllowList:
    def test_edr_and_siem_endpoints_kept(self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
                                         make_target: Callable[..., Target], creds: Credentials,
                                         ctx: ConnectorContext) -> None:
        """Target.allow (site/tag/host entries of the inventory) become allow rules on exactly those ports."""
        target = replace(make_target(double), allow=(
            AllowRule(source="tag edr", to=("198.51.100.7",), protocol="tcp", ports=(443,), note="EDR cloud"),
            AllowRule(source="site boston", to=("10.20.0.0/24",), protocol="udp", ports=(514,), note="syslog")))
        isolate(conn, target, creds, ctx)
        assert host.allows_outbound("198.51.100.7", 443) and not host.allows_outbound("198.51.100.7", 80)
        assert host.allows_outbound("10.20.0.9", 514, "UDP") and not host.allows_outbound("10.20.0.9", 514, "TCP")
        assert not host.allows_inbound("198.51.100.7", 445)

    def test_resolve_on_target_refused_before_connecting(
            self, conn: WinRMWindowsConnector, double: WSManDouble, make_target: Callable[..., Target]) -> None:
        """Names resolved on the target are not supported on Windows yet: a clear refusal, nothing sent."""
        from connectors.errors import InvalidInput

        target = replace(make_target(double), allow=(AllowRule(source="tag edr", names=("edr.example.com",),
                                                               resolve="target"),))
        with pytest.raises(InvalidInput, match="resolve: target"):
            conn.validate(target, "isolate", {})
        assert double.journal == []


class TestDomainAccountOverNTLM:
    def test_isolation_without_dc_rules_is_refused(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], ctx: ConnectorContext) -> None:
        """An NTLM logon of CORP\\ir-agent is completed by a DC (MS-APDS 3.1): isolating without keeping one
        would make the fresh-connection check fail and the dead-man revert every time — refused up front."""
        creds = Credentials(DOMAIN_USER, Secret(DOMAIN_PASSWORD))
        with conn.open(make_target(double), creds, ctx) as s, \
                pytest.raises(Rejected, match="domain_controllers.*kerberos"):  # type: ignore[attr-defined]
            conn.snapshot(s, "isolate", {})
        assert not host.tasks and not host.group_rules("IR-Containment")

    def test_dc_rules_keep_reauthentication_working(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], ctx: ConnectorContext) -> None:
        """With domain_controllers the DC stays reachable on the Netlogon/Kerberos/LDAP ports, so the new
        connection after isolating authenticates, and the DC is reachable on nothing else."""
        creds = Credentials(DOMAIN_USER, Secret(DOMAIN_PASSWORD))
        isolate(conn, make_target(double, domain_controllers=["10.0.0.2"]), creds, ctx)
        assert double.dc_unreachable_logons == 0
        assert host.allows_outbound("10.0.0.2", 445) and host.allows_outbound("10.0.0.2", 88, "UDP")
        assert not host.allows_outbound("10.0.0.2", 3389)

    def test_double_refuses_ntlm_domain_logon_without_dc(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], ctx: ConnectorContext) -> None:
        """The double itself: with the DC blocked, the domain account's logon fails; a local account's works."""
        from connectors.errors import AuthError
        from tests.doubles.wsman import Rule

        host.rules.append(Rule("block-dc", "block dc", direction="Outbound", action="Block", remote=["10.0.0.2"]))
        with pytest.raises(AuthError):
            conn.open(make_target(double), Credentials(DOMAIN_USER, Secret(DOMAIN_PASSWORD)), ctx)
        assert double.dc_unreachable_logons == 1


class TestIPv6Management:
    def test_neighbour_discovery_kept_when_managing_over_ipv6(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials) -> None:
        """Without ICMPv6 neighbour discovery (types 133-137, link-local and multicast) the IPv6 management path
        dies once the neighbour cache entry expires."""
        ctx = ConnectorContext(management_addresses=("127.0.0.1", "2001:db8::5"), connect_timeout=1.0,
                               command_timeout=2.0)
        isolate(conn, make_target(double), creds, ctx)
        for t in (135, 136):
            assert host.allows_outbound("ff02::1:ff00:5", t, "ICMPv6") and host.allows_inbound("fe80::1", t, "ICMPv6")
            assert host.allows_outbound("2001:db8::5", t, "ICMPv6")
        assert not host.allows_outbound("fe80::1", 445)
