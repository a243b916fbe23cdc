"""Addresses that must never be blocked, and the flags that unlock only what they say (issue 17, finding 8)."""

from __future__ import annotations

import pytest

from connectors.errors import InvalidInput
from connectors.firewall import FirewallConnector
from connectors.firewall.addresses import parse_addresses, to_text
from connectors.types import Target


def _target(**options: object) -> Target:
    return Target("edge", "device", "192.0.2.1", "firewall",
                  options={"device_type": "cisco_asa", "acl": "OUTSIDE-IN", **options})


@pytest.mark.parametrize("value,kind", [
    ("127.0.0.1", "loopback"), ("127.0.0.0/8", "loopback"), ("::1", "loopback"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("fe80::/10", "link-local"),
    ("224.0.0.5", "multicast"), ("ff02::1", "multicast"), ("239.1.2.3", "multicast"),
    ("0.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("::ffff:127.0.0.1", "IPv4-mapped")])
def test_never_blocked_even_with_every_flag(value, kind):
    """--allow-private (and --allow-broad) unlock private space and wide prefixes, never these."""
    with pytest.raises(InvalidInput, match=kind):
        parse_addresses([value], allow_private=True, allow_broad=True)


@pytest.mark.parametrize("value", ["2000::/3", "64.0.0.0/3", "45.0.0.0/8", "2a00::/16", "8.8.0.0/15"])
def test_broad_prefixes_need_allow_broad(value):
    with pytest.raises(InvalidInput, match="--allow-broad"):
        parse_addresses([value])


def test_broad_allowed_on_request_and_minimum_configurable():
    assert parse_addresses(["45.0.0.0/8"], allow_broad=True)
    conn = FirewallConnector()
    conn.validate(_target(min_prefix_v4=8), "block_ip", {"addresses": ["45.0.0.0/8"]})
    with pytest.raises(InvalidInput, match="/24"):
        conn.validate(_target(min_prefix_v4=24), "block_ip", {"addresses": ["45.1.2.0/23"]})
    with pytest.raises(InvalidInput, match="options.min_prefix_v6"):
        conn.validate(_target(min_prefix_v6=200), "block_ip", {"addresses": ["45.1.2.3"]})


@pytest.mark.parametrize("value", ["203.0.113.7", "198.51.100.9", "192.0.2.77", "2001:db8::5"])
def test_documentation_ranges_block_without_flags(value):
    """The help example (TEST-NET-3) and the other RFC 5737/3849 ranges are ordinary addresses."""
    assert [to_text(n) for n in parse_addresses([value])] == [value]


@pytest.mark.parametrize("value", ["10.1.2.3", "172.20.0.9", "192.168.7.7", "fd00::7", "100.64.1.1"])
def test_private_needs_the_cli_flag_and_says_which(value):
    with pytest.raises(InvalidInput, match="--allow-private") as info:
        parse_addresses([value])
    assert info.value.detail["reason"] == "private"
    assert parse_addresses([value], allow_private=True)


def test_cli_help_example_is_not_refused():
    from agent.cli import DESCRIPTION
    example = next(line.split()[2] for line in DESCRIPTION.splitlines() if "agent block-ip" in line)
    assert parse_addresses([example])
