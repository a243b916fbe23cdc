"""A device never blocks its own addresses, read from the device itself (issue 17, finding 8).

The engine already passes the management address; a router has others (its inside interface, a loopback
service address). Each dialect reads its interface addresses (simulators model the vendor's listing) and a
block containing one is refused before anything is sent.
"""

from __future__ import annotations

import pytest

from connectors.errors import InvalidInput
from tests.integration.firewall.conftest import SIM_TYPES, Device

OUTSIDE = "198.51.100.1"   # every simulator's own outside-interface address (tests/doubles/vendor_cli/base.py)


@pytest.mark.parametrize("value", [OUTSIDE, "198.51.100.0/24"])
def test_own_interface_address_is_refused_before_any_change(device: Device, value: str) -> None:
    args = {"addresses": ["45.33.7.9", value]}
    with pytest.raises(InvalidInput, match="own address 198.51.100.1") as info:
        device.run("block_ip", args)
    assert info.value.detail["reason"] == "own_address"
    assert device.sim.saves == 0 and device.sim.state.blocklist == set() and not device.sim.rule_references_group


def test_resolve_reports_the_own_addresses(device: Device) -> None:
    with device.session() as s:
        facts = device.conn.resolve(s, "block_ip", {"addresses": ["45.33.7.9"]})
    assert OUTSIDE in facts["facts"]["own"], facts


def test_all_simulators_covered() -> None:
    assert len(SIM_TYPES) == 7
