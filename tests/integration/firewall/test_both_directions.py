"""Blocks cut both directions — the attacker's inbound traffic and the inside's call-backs to it (finding 8).

Every simulator decides packets by its rules the way the vendor documents (first match wins; ASA/IOS/Junos also
by the interface and direction an ACL/filter is applied to: tests/doubles/vendor_cli). PAN-OS and FortiGate use
a second rule/policy IR-BLOCK-OUT, MikroTik a second raw rule, the Linux router its forward chain, ASA/IOS/Junos a
second entry in the outbound ACL/filter the inventory names (test_outbound.py). A device whose outbound place is
not named blocks inbound only when the run says so (``outbound: false``), and the result then says so.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from tests.integration.firewall.conftest import SIM_TYPES, make_device

A, INSIDE, OTHER = "45.33.7.9", "192.0.2.80", "45.99.0.1"
NAMED_OUTBOUND = {"cisco_asa": "acl_out", "cisco_ios": "acl_out", "cisco_xe": "acl_out",
                  "juniper_junos": "filter_out"}


@pytest.mark.parametrize("device_type", SIM_TYPES)
def test_every_dialect_drops_both_directions(device_type: str, sim_factory, tmp_path: Path,
                                             host_key: paramiko.PKey) -> None:
    dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key)
    st = dev.sim.state
    assert not st.drops(A, INSIDE) and not st.drops(INSIDE, A)
    _, result, check = dev.run("block_ip", {"addresses": [A], "outbound": True})
    assert check.in_effect and not any("NOT blocked" in w for w in result.warnings)
    assert st.drops(A, INSIDE) and st.drops(INSIDE, A)
    assert not st.drops(INSIDE, OTHER) and not st.drops(OTHER, INSIDE)


@pytest.mark.parametrize("device_type", sorted(NAMED_OUTBOUND))
def test_inbound_only_run_says_outbound_is_not_blocked(device_type: str, sim_factory, tmp_path: Path,
                                                       host_key: paramiko.PKey) -> None:
    dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key,
                      **{NAMED_OUTBOUND[device_type]: None})
    _, result, _ = dev.run("block_ip", {"addresses": [A], "outbound": False})
    assert any("outbound traffic TO the address" in w and "NOT blocked" in w for w in result.warnings), \
        result.warnings
    assert dev.sim.state.drops(A, INSIDE) and not dev.sim.state.drops(INSIDE, A)
