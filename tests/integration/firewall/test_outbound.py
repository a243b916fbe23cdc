"""Outbound blocking on ASA, IOS and Junos: traffic TO the blocked address (call-backs, C2) dies too (issue 17,
finding 8: "Vendor rules block inbound only ... block both ways everywhere").

The simulators decide a packet the way the device does: ASA and IOS check the ACL bound ``in`` on the ingress
interface and the one bound ``out`` on the egress interface, first match wins, implicit deny at the end (Cisco ASA
CLI configuration guide, "Inbound and Outbound Rules", "Implicit Deny"; IOS ``ip access-group {in|out}``); Junos
evaluates the ``input`` filter of the ingress unit and the ``output`` filter of the egress unit, terms in order,
implicit discard (Junos "Applying Firewall Filters to Interfaces"). Where the outbound place is named in the
inventory (``options.acl_out`` / ``options.filter_out``; IOS interface mode needs only ``options.interface``) the
block cuts both directions; where it is not and the runbook asks for outbound (the default), the request is refused
before anything connects.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from connectors.errors import InvalidInput
from tests.doubles.vendor_cli.cisco import IosState
from tests.integration.firewall.cli_env import SimCli
from tests.integration.firewall.conftest import Device, make_device

A, WEB, BYSTANDER = "45.33.7.9", "192.0.2.80", "45.99.0.1"
TYPES = ["cisco_asa", "cisco_ios", "juniper_junos"]
OPTION = {"cisco_asa": "acl_out", "cisco_ios": "acl_out", "juniper_junos": "filter_out"}


@pytest.mark.parametrize("device", TYPES, indirect=True)
def test_block_drops_both_directions_and_undo_restores(device: Device) -> None:
    st = device.sim.state
    assert not st.drops(A, WEB) and not st.drops(WEB, A), "the simulator's default policy passes this traffic"
    snap, result, check = device.run("block_ip", {"addresses": [A], "outbound": True})
    assert check.in_effect, check.summary
    assert not any("NOT blocked" in w for w in result.warnings), result.warnings
    assert st.drops(A, WEB) and st.drops(WEB, A)
    assert not st.drops(BYSTANDER, WEB) and not st.drops(WEB, BYSTANDER)
    _, after = device.undo("block_ip", {"addresses": [A], "outbound": True}, snap)
    assert not after.in_effect
    assert not st.drops(A, WEB) and not st.drops(WEB, A)


def test_ios_interface_mode_binds_its_own_acl_out(sim_factory, tmp_path: Path, host_key: paramiko.PKey) -> None:
    """IOS with only ``options.interface``: IR-BLOCKLIST-IN is applied ``in`` and IR-BLOCKLIST-OUT ``out`` there."""
    sim = sim_factory("cisco_ios", IosState(acl=None))
    dev = make_device(sim, "cisco_ios", tmp_path, host_key, acl=None, acl_out=None, interface="GigabitEthernet0/0")
    _, result, check = dev.run("block_ip", {"addresses": [A], "outbound": True})
    assert check.in_effect, check.summary
    assert sim.state.drops(A, WEB) and sim.state.drops(WEB, A) and not sim.state.drops(WEB, BYSTANDER)
    assert " ip access-group IR-BLOCKLIST-OUT out" in result.details["applied_lines"]


@pytest.mark.parametrize("device_type", TYPES)
def test_outbound_without_the_option_is_refused_before_connecting(device_type: str, sim_factory, tmp_path: Path,
                                                                   host_key: paramiko.PKey) -> None:
    sim = sim_factory(device_type)
    dev = make_device(sim, device_type, tmp_path, host_key, **{OPTION[device_type]: None})
    with pytest.raises(InvalidInput, match=f"options.{OPTION[device_type]}") as info:
        dev.conn.validate(dev.target, "block_ip", {"addresses": [A], "outbound": True})
    assert info.value.detail["field"] == f"options.{OPTION[device_type]}"
    assert sim.connections == 0


@pytest.mark.parametrize("device_type", TYPES)
def test_an_outbound_acl_that_is_not_applied_is_refused(device_type: str, sim_factory, tmp_path: Path,
                                                        host_key: paramiko.PKey) -> None:
    """A rule in an ACL/filter bound to no interface blocks nothing: refused, nothing changed."""
    sim = sim_factory(device_type)
    sim.state.unbind_outbound()
    dev = make_device(sim, device_type, tmp_path, host_key)
    with pytest.raises(Exception, match="not applied") as info:
        dev.run("block_ip", {"addresses": [A], "outbound": True})
    assert type(info.value).__name__ == "Rejected"
    assert sim.state.blocklist == set() and sim.saves == 0


def test_cli_refuses_outbound_without_option_and_inbound_only_says_so(sim_factory, tmp_path: Path,
                                                                      host_key: paramiko.PKey) -> None:
    sim = sim_factory("cisco_asa")
    cli = SimCli(tmp_path, host_key, {"edge": ("cisco_asa", sim)}, edge={"acl_out": None})
    res = cli("block-ip", A, "--reason", "c2", "--yes")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "options.acl_out" in res.stderr + res.stdout and sim.connections == 0
    res = cli("block-ip", A, "--inbound-only", "--reason", "c2", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "NOT blocked" in res.stdout + res.stderr
    assert sim.state.drops(A, WEB) and not sim.state.drops(WEB, A)
