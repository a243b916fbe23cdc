"""Established sessions do not survive a block (issue 17, finding 6).

On stateful firewalls a deny rule is checked when a connection is set up; flows that were already established —
the attacker's open shell, an implant's outbound C2 channel — live on until cleared. The simulators keep a
session table (tests/doubles/vendor_cli/base.py ``Flows``); the connector clears the blocked addresses' flows in
both directions after the block is in effect and ``verify`` reads the table back.
"""

from __future__ import annotations

import pytest

from tests.integration.firewall.conftest import Device

A, NET = "45.33.7.9", "45.34.0.0/24"
INSIDE, BYSTANDER = "192.0.2.80", "198.51.100.20"
STATEFUL = ["cisco_asa", "fortinet", "paloalto_panos", "juniper_junos", "mikrotik_routeros"]
# dialects whose clear reports how many flows it ended (FortiOS' clear says nothing; MikroTik's count is read
# before the remove): the count is journaled with the result
COUNTED = ["cisco_asa", "paloalto_panos", "juniper_junos", "mikrotik_routeros"]


def _seed(dev: Device) -> None:
    flows = dev.sim.state.sessions
    flows.add(A, INSIDE, 40001, 22)            # inbound: the attacker's open shell
    flows.add(INSIDE, A, 51515, 443)           # outbound: the implant's C2 channel
    flows.add(INSIDE, "45.34.0.77", 51516, 443)  # into the blocked prefix
    flows.add(BYSTANDER, INSIDE, 40002, 443)   # someone else: must survive


@pytest.mark.parametrize("device", STATEFUL, indirect=True)
def test_block_clears_established_flows_both_ways(device: Device) -> None:
    _seed(device)
    _, result, check = device.run("block_ip", {"addresses": [A, NET]})
    flows = device.sim.state.sessions.flows
    assert [f[1] for f in flows] == [BYSTANDER], flows
    assert result.details["sessions"], result.details
    assert check.in_effect and check.observed["sessions_left"] == {}, check.summary
    if device.device_type in COUNTED:
        assert result.details["sessions_cleared"] == {A: 2, NET: 1}, result.details


def test_mikrotik_clears_only_the_blocked_address(sim_factory, tmp_path, host_key) -> None:
    """RouterOS matches connections by a regular expression on "address:port" (``src-address~``): 45.33.7.9 must
    not also end 45.33.7.90's flows, nor a /23 miss its second half."""
    from tests.integration.firewall.conftest import make_device
    dev = make_device(sim_factory("mikrotik_routeros"), "mikrotik_routeros", tmp_path, host_key)
    flows = dev.sim.state.sessions
    flows.add(A, INSIDE)
    flows.add("45.33.7.90", INSIDE)            # a neighbour whose text starts the same
    flows.add(INSIDE, "45.40.1.200")           # inside the /23 below, second half
    flows.add(INSIDE, "45.40.2.1")             # just outside it
    _, result, check = dev.run("block_ip", {"addresses": [A, "45.40.0.0/23"]})
    assert sorted(f[1] if f[1] != INSIDE else f[3] for f in flows.flows) == ["45.33.7.90", "45.40.2.1"]
    assert result.details["sessions_cleared"] == {A: 1, "45.40.0.0/23": 1}
    assert check.in_effect, check.summary


@pytest.mark.parametrize("device", STATEFUL, indirect=True)
def test_verify_sees_a_flow_that_survived(device: Device) -> None:
    """A flow still in the table (re-established, or a clear that did not take) is 'not in effect'."""
    device.run("block_ip", {"addresses": [A]})
    device.sim.state.sessions.add(INSIDE, A, 52000, 443)
    with device.session() as s:
        check = device.conn.verify(s, "block_ip", {"addresses": [A]})
    assert not check.in_effect and check.observed["sessions_left"] == {A: 1}, check.summary
    assert "established sessions remain" in check.summary


def test_fortigate_never_clears_without_its_filter(sim_factory, tmp_path, host_key) -> None:
    """Failures first: if FortiOS refuses the session filter, a following 'diagnose sys session clear' would
    end every session on the unit. The connector stops and says the flows were not cleared."""
    from tests.integration.firewall.conftest import make_device
    dev = make_device(sim_factory("fortinet"), "fortinet", tmp_path, host_key)
    _seed(dev)
    dev.sim.inject(r"^diagnose sys session filter src", "reject", message="Command fail. Return code -1")
    _, result, check = dev.run("block_ip", {"addresses": [A]})
    assert len(dev.sim.state.sessions.flows) == 4, "sessions were cleared without a filter"
    assert any("NOT cleared" in w for w in result.warnings), result.warnings
    assert not check.in_effect and check.observed["sessions_left"][A] == 2


def test_fortigate_typed_ahead_never_clears_after_a_refused_filter(sim_factory, tmp_path, host_key) -> None:
    """The FortiGate dialect types the filter lines ahead and each clear only after its filter was answered:
    when the second address's destination filter is refused, the first address's flows are gone, nothing after
    the refusal ran, and the bystander's session (what an unfiltered clear would end) survives."""
    from tests.integration.firewall.conftest import make_device
    dev = make_device(sim_factory("fortinet"), "fortinet", tmp_path, host_key)
    _seed(dev)
    dev.sim.inject(r"^diagnose sys session filter dst", "reject", nth=2, message="Command fail. Return code -1")
    _, result, _ = dev.run("block_ip", {"addresses": [A, NET]})
    left = sorted((f[1], f[3]) for f in dev.sim.state.sessions.flows)
    assert left == sorted([(INSIDE, "45.34.0.77"), (BYSTANDER, INSIDE)]), left
    assert any("NOT cleared" in w and "45.34.0.0" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("device_type", ["cisco_asa", "paloalto_panos", "juniper_junos"])
def test_self_contained_clears_are_typed_ahead_and_a_refusal_stays_local(device_type: str, sim_factory, tmp_path,
                                                                         host_key) -> None:
    """ASA/PAN-OS/Junos session lines are complete commands, sent 40 per round trip: the device refusing the
    first address's line leaves that address's flows (and says so); the next address's flows are still cleared
    and nobody else's are touched."""
    from tests.integration.firewall.conftest import make_device
    dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key)
    _seed(dev)
    first = {"cisco_asa": r"^clear conn address 45\.33\.7\.9$", "paloalto_panos": r"^clear session .* 45\.33\.7\.9$",
             "juniper_junos": r"^clear security flow session \S+ 45\.33\.7\.9/32$"}[device_type]
    dev.sim.inject(first, "reject", nth=0)
    _, result, check = dev.run("block_ip", {"addresses": [A, NET]})
    left = sorted((f[1], f[3]) for f in dev.sim.state.sessions.flows)
    assert left == sorted([(A, INSIDE), (INSIDE, A), (BYSTANDER, INSIDE)]), left
    assert any("NOT cleared" in w and A in w for w in result.warnings), result.warnings
    assert not check.in_effect and check.observed["sessions_left"] == {A: 2}
