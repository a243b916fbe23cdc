"""Other administrators' work on the device is neither committed nor thrown away (issue 17, finding 5).

Junos: plain ``configure`` shares one candidate, so our ``commit`` would activate another admin's half-done edit
and ``rollback 0`` would discard it; the dialect uses ``configure private``. PAN-OS: the candidate is shared
too; the dialect uses ``commit partial admin <login>`` and ``revert config partial admin <login>``. A lock held
by someone else is a clear, retryable :class:`Busy` naming the holder. The simulators model the documented
behaviour (citations in tests/doubles/vendor_cli/junos.py and panos.py).
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from connectors.errors import Busy, Rejected
from tests.integration.firewall.conftest import Device, make_device

A = "45.33.7.9"
OTHER = "set system host-name edited-by-admin2"
WHO = "admin2 terminal pts/1 (pid 4242) on since 2024-05-06 10:00:00 UTC"


@pytest.fixture
def junos(sim_factory, tmp_path: Path, host_key: paramiko.PKey) -> Device:
    return make_device(sim_factory("juniper_junos"), "juniper_junos", tmp_path, host_key)


@pytest.fixture
def panos(sim_factory, tmp_path: Path, host_key: paramiko.PKey) -> Device:
    return make_device(sim_factory("paloalto_panos"), "paloalto_panos", tmp_path, host_key)


class TestJunos:
    def test_other_admins_pending_edit_is_not_committed(self, junos: Device) -> None:
        """admin2 is half-way through a change in the shared candidate: we commit nothing of theirs, say who
        holds the device, and leave their edit pending."""
        st = junos.sim.state
        st.foreign_edit(WHO, OTHER)
        committed_before = list(st.committed)
        with pytest.raises(Busy, match="admin2") as info:
            junos.run("block_ip", {"addresses": [A]})
        assert info.value.transient
        assert OTHER not in st.committed and st.committed == committed_before
        assert OTHER in st.candidate, "admin2's pending edit was discarded"

    def test_private_commit_carries_only_our_lines(self, junos: Device) -> None:
        """Once admin2 has committed, the block goes through — in configure private."""
        _, _, check = junos.run("block_ip", {"addresses": [A]})
        assert check.in_effect and st_blocked(junos) == {A}
        assert "configure private" in junos.sim.lines and "configure" not in junos.sim.lines

    def test_refusal_cleanup_drops_only_our_private_changes(self, junos: Device) -> None:
        junos.sim.inject(r"^commit confirmed", "reject")
        with pytest.raises(Rejected):
            junos.run("block_ip", {"addresses": [A]})
        st = junos.sim.state
        assert st.candidate == st.committed and st_blocked(junos) == set()

    def test_exclusive_lock_held_by_another_admin_is_busy(self, junos: Device) -> None:
        junos.sim.state.exclusive = WHO
        with pytest.raises(Busy, match="locked by") as info:
            junos.run("block_ip", {"addresses": [A]})
        assert info.value.transient and "admin2" in info.value.message
        assert st_blocked(junos) == set()


def st_blocked(dev: Device) -> set[str]:
    return set(dev.sim.state.blocklist)


class TestPanos:
    OTHER = "set address ADMIN2-OBJ ip-netmask 198.51.100.9/32"

    def test_partial_commit_leaves_other_admins_changes_pending(self, panos: Device) -> None:
        st = panos.sim.state
        st.foreign_edit("admin2", self.OTHER)
        _, _, check = panos.run("block_ip", {"addresses": [A]})
        assert check.in_effect and st.blocklist == {A}
        assert "ADMIN2-OBJ" not in st.running["address"], "admin2's pending change was committed"
        assert st.pending_of("admin2") == [self.OTHER]
        assert "commit partial admin admin" in panos.sim.lines and "commit" not in panos.sim.lines

    def test_cleanup_reverts_only_our_changes(self, panos: Device) -> None:
        st = panos.sim.state
        st.foreign_edit("admin2", self.OTHER)
        panos.sim.inject(r"^commit", "reject")
        with pytest.raises(Rejected):
            panos.run("block_ip", {"addresses": [A]})
        assert st.pending_of("admin2") == [self.OTHER], "admin2's pending change was reverted"
        assert st.pending_of("admin") == [] and st.blocklist == set()
        assert "revert config partial admin admin" in panos.sim.lines and "revert config" not in panos.sim.lines

    @pytest.mark.parametrize("lock", ["config_lock", "commit_lock"])
    def test_lock_held_by_another_admin_is_busy(self, panos: Device, lock: str) -> None:
        setattr(panos.sim.state, lock, "admin2")
        with pytest.raises(Busy, match="admin2") as info:
            panos.run("block_ip", {"addresses": [A]})
        assert info.value.transient
        st = panos.sim.state
        assert st.blocklist == set() and st.pending_of("admin") == []
