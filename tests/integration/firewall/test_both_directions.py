"""Blocks cut both directions — the attacker's inbound traffic and the inside's call-backs to it (finding 6).

Where the dialect's rules match sources only (today: ASA, IOS, Junos) the result says so in a warning;
PAN-OS and FortiGate (a second rule/policy IR-BLOCK-OUT), MikroTik (a second raw rule) and the Linux router drop
both directions — those simulators decide packets by their rules, first match wins.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from tests.integration.firewall.conftest import SIM_TYPES, Device, make_device

A, INSIDE, OTHER = "45.33.7.9", "10.1.0.50", "45.99.0.1"


@pytest.mark.parametrize("device_type", ["mikrotik_routeros", "paloalto_panos", "fortinet"])
def test_panos_and_mikrotik_drop_both_directions(device_type: str, sim_factory, tmp_path: Path,
                                                 host_key: paramiko.PKey) -> None:
    dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key)
    st = dev.sim.state
    assert not st.drops(A, INSIDE) and not st.drops(INSIDE, A)
    _, result, check = dev.run("block_ip", {"addresses": [A]})
    assert check.in_effect and not any("NOT blocked" in w for w in result.warnings)
    assert st.drops(A, INSIDE) and st.drops(INSIDE, A)
    assert not st.drops(INSIDE, OTHER) and not st.drops(OTHER, INSIDE)


@pytest.mark.parametrize("device", [t for t in SIM_TYPES if t not in ("mikrotik_routeros", "paloalto_panos",
                                                                      "fortinet")], indirect=True)
def test_source_only_dialects_say_outbound_is_not_blocked(device: Device) -> None:
    _, result, _ = device.run("block_ip", {"addresses": [A]})
    assert any("outbound traffic TO the address" in w and "NOT blocked" in w for w in result.warnings), \
        result.warnings
