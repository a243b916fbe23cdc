"""Firewall connector pieces that need no device: address policing, error mapping, dry runs, options."""

from __future__ import annotations

import subprocess
import sys

import paramiko
import pytest

from connectors.errors import (
    AuthError,
    ConnectorError,
    HostKeyError,
    InvalidInput,
    Rejected,
    Timeout,
    Unreachable,
)
from connectors.firewall import DIALECTS, FirewallConnector
from connectors.firewall.addresses import parse_addresses, parse_network, to_text
from connectors.firewall.errors import map_exception
from connectors.types import ConnectorContext, Target


def _target(device_type: str, **options: object) -> Target:
    return Target("edge", "device", "192.0.2.1", "firewall", options={"device_type": device_type, **options})


class TestAddresses:
    def test_canonical_forms(self) -> None:
        """Hosts come back bare, prefixes with their length, host bits dropped, duplicates removed."""
        nets = parse_addresses(["100.2.0.7", "100.2.0.7/32", "45.33.0.9/24", "2a00:1450::1"])
        assert [to_text(n) for n in nets] == ["100.2.0.7", "45.33.0.0/24", "2a00:1450::1"]

    @pytest.mark.parametrize("value", ["1.2.3.4\n", "１.２.３.４", "1.2.3.4 ", "1.2.3", "::g", 7, None, "a" * 100])
    def test_non_addresses_refused(self, value: object) -> None:
        """Anything but an ASCII address/CIDR string is InvalidInput naming the field."""
        with pytest.raises(InvalidInput, match="^addresses: "):
            parse_network(value)

    def test_family_restriction(self) -> None:
        """IPv6 is refused for IPv4-only dialects with a message saying so."""
        with pytest.raises(InvalidInput, match="IPv6"):
            parse_addresses(["2a00:1450::1"], families=frozenset({4}))

    def test_supernet_of_private_space_refused(self) -> None:
        """A prefix that swallows private space counts as private."""
        with pytest.raises(InvalidInput, match="private"):
            parse_addresses(["8.0.0.0/5"])
        assert parse_addresses(["8.0.0.0/5"], allow_private=True, allow_broad=True)

    def test_empty_and_oversized_requests(self) -> None:
        """An empty list, a bare string and more than 5000 addresses are refused."""
        for bad in ([], "100.2.0.7", ["100.2.0.7"] * 5001):
            with pytest.raises(InvalidInput):
                parse_addresses(bad)


class TestErrorMapping:
    """Every library exception the connector can meet maps to the connector error tree (STYLE #5)."""

    def _wrapped(self, inner: BaseException, outer: BaseException) -> BaseException:
        """``outer`` raised while handling ``inner`` (netmiko's way: the cause sits in ``__context__``)."""
        outer.__context__ = inner
        return outer

    def test_map(self) -> None:
        """Host key, auth, timeouts, refused sockets, dropped sessions and driver confusion are all mapped."""
        from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException, ReadTimeout

        key = paramiko.ECDSAKey.generate()
        cases = [
            (self._wrapped(paramiko.SSHException("Server '[127.0.0.1]:22' not found in known_hosts"),
                           NetmikoTimeoutException("A paramiko SSHException occurred")), HostKeyError),
            (self._wrapped(paramiko.BadHostKeyException("h", key, key), NetmikoTimeoutException("x")),
             HostKeyError),
            (NetmikoAuthenticationException("Authentication to device failed."), AuthError),
            (ReadTimeout("Pattern not detected"), Timeout),
            (self._wrapped(ConnectionRefusedError(111, "Connection refused"),
                           NetmikoTimeoutException("TCP connection to device failed.")), Unreachable),
            (self._wrapped(TimeoutError("timed out"), NetmikoTimeoutException("TCP connection failed")), Timeout),
            (NetmikoTimeoutException("No existing session"), Timeout),
            (EOFError(), Unreachable),
            (OSError("Socket is closed"), Unreachable),
            (ValueError("Router prompt not found"), Rejected),
            (KeyError("surprise"), ConnectorError),
        ]
        for exc, expected in cases:
            mapped = map_exception(exc, target="edge")
            assert type(mapped) is expected, (exc, mapped)
            assert mapped.target == "edge"


class TestConnectorSurface:
    def test_actions_and_dialects(self) -> None:
        """The connector is named firewall, offers three actions and one dialect per supported device_type."""
        conn = FirewallConnector()
        assert conn.name == "firewall" and set(conn.actions) == {"block_ip", "unblock_ip", "list_blocked"}
        assert not conn.actions["list_blocked"].mutating
        assert {"linux", "cisco_asa", "cisco_ios", "cisco_xe", "fortinet", "paloalto_panos", "juniper_junos",
                "mikrotik_routeros"} <= set(DIALECTS)

    @pytest.mark.parametrize("device_type,options,expect", [
        ("cisco_asa", {"acl": "outside_access_in"},
         "access-list outside_access_in line 1 extended deny ip object-group IR-BLOCKLIST any"),
        ("cisco_ios", {"interface": "Gi0/0"}, " ip access-group IR-BLOCKLIST-IN in"),
        ("fortinet", {}, "set srcaddr IR-BLOCKLIST"),
        ("paloalto_panos", {}, "move rulebase security rules IR-BLOCK top"),
        ("juniper_junos", {"filter": "EDGE-IN"}, "commit confirmed 5"),
        ("mikrotik_routeros", {}, "/ip firewall address-list add list=IR-BLOCKLIST address=100.2.0.7"),
        ("linux", {}, "nft add element inet ir_block v4 '{ 100.2.0.7 }'"),
    ])
    def test_preview_without_connecting(self, device_type: str, options: dict[str, str], expect: str) -> None:
        """Offline dry runs (no device read) list the lines of a first block, each under its condition,
        including the deny rule and the persist step (exact previews: test_preview_exact.py)."""
        lines = FirewallConnector().preview(_target(device_type, **options), "block_ip",
                                            {"addresses": ["100.2.0.7"]}, ConnectorContext())
        assert any(ln.endswith(": " + expect) for ln in lines), lines

    @pytest.mark.parametrize("device_type,options", [("cisco_asa", {}), ("juniper_junos", {}),
                                                     ("cisco_ios", {}), ("linux", {"persist_file": "x;reboot"})])
    def test_missing_or_bad_options(self, device_type: str, options: dict[str, str]) -> None:
        """Required dialect options are checked, and option values must be plain names/paths."""
        with pytest.raises(InvalidInput, match="options\\."):
            FirewallConnector().validate(_target(device_type, **options), "block_ip", {"addresses": ["100.2.0.7"]})

    def test_validation_does_not_import_netmiko(self) -> None:
        """Validation and dry runs stay free of the slow netmiko import."""
        code = ("import sys; from connectors.firewall import FirewallConnector as F; from connectors.types import "
                "Target as T; F().validate(T('e','device','192.0.2.1','firewall',options={'device_type':'linux'}),"
                "'block_ip',{'addresses':['100.2.0.7']}); print('netmiko' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"


class TestLinuxConntrack:
    """The router's conntrack answers, as the loop line prints them (conntrack-tools 1.4.7 wording)."""

    def _dialect(self, answer: str, table: str = "@@table ok\n@@table-ok\n__RC=0") -> object:
        """The router answers ``table`` to the table read (and the read-back), ``answer`` to a delete loop."""
        from connectors.firewall.linux import LinuxNft
        d = LinuxNft(None, {}, target="fw")
        d._show = lambda line: answer if line.startswith("for a in") else table  # type: ignore[method-assign]
        return d

    def test_counts_per_address(self) -> None:
        from connectors.firewall.addresses import parse_network
        out = ("@@ 45.1.2.3\nconntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\nrc=0\n"
               "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\nrc=1\n"
               "@@ 45.9.0.0/24\nconntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\nrc=1\n"
               "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted.\nrc=0\n__RC=0")
        d = self._dialect(out)
        sent, problems = d.clear_sessions([parse_network("45.1.2.3"), parse_network("45.9.0.0/24")])  # type: ignore[attr-defined]
        assert problems == [] and len(sent) == 2
        assert d.cleared == {"45.1.2.3": 2, "45.9.0.0/24": 1}  # type: ignore[attr-defined]

    def test_a_missing_tool_is_never_reported_as_cleared(self) -> None:
        from connectors.firewall.addresses import parse_network
        missing = "bash: line 1: conntrack: command not found\n__RC=127"
        d = self._dialect("", table=missing)
        sent, problems = d.clear_sessions([parse_network("45.1.2.3")])  # type: ignore[attr-defined]
        assert sent == [] and "NOT cleared" in problems[0] and "conntrack: command not found" in problems[0]
        assert d.sessions_left([parse_network("45.1.2.3")]) == {}  # type: ignore[attr-defined]
        out = "@@ 45.1.2.3\nsudo: a password is required\nrc=1\nrc=1\n__RC=0"
        sent, problems = self._dialect(out).clear_sessions([parse_network("45.1.2.3")])  # type: ignore[attr-defined]
        assert "NOT cleared" in problems[0] and "45.1.2.3" in problems[0]

    def test_read_back_counts_prefixes_from_one_dump(self) -> None:
        from connectors.firewall.addresses import parse_network
        table = "@@table-ok\n      2 45.1.2.3 10.1.0.5\n      1 10.1.0.6 45.9.0.77\n      4 10.1.0.6 45.10.0.1\n__RC=0"
        d = self._dialect("", table=table)
        left = d.sessions_left([parse_network("45.1.2.3"), parse_network("45.9.0.0/24")])  # type: ignore[attr-defined]
        assert left == {"45.1.2.3": 2, "45.9.0.0/24": 1}
