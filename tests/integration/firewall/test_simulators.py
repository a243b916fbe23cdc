"""The firewall connector's contract, run against every vendor simulator through netmiko's real drivers."""

from __future__ import annotations

import ipaddress
import re

import pytest

from connectors.errors import Rejected, Timeout, Unreachable
from tests.integration.firewall.conftest import CONFIG_ENTRY, PREP_ENTRIES, SAVES_PER_CHANGE, Device

A, B, C = "100.2.0.7", "100.2.0.8", "100.2.0.9"
NET = "45.33.0.0/24"


def _changes(device: Device) -> int:
    """Configuration-mode entries (or, on mode-less CLIs, configuration commands) the connector sent."""
    sent = sum(1 for line in device.sim.lines if re.search(CONFIG_ENTRY[device.device_type], line.strip()))
    return sent - PREP_ENTRIES.get(device.device_type, 0) * device.sim.sessions


def _one_entry(device: Device) -> bool:
    """One configuration-mode entry where the CLI has modes (the batch is not split over several)."""
    return device.device_type in ("fortinet", "mikrotik_routeros") or _changes(device) == 1


class TestBlockLifecycle:
    def test_block_verify_idempotent_undo(self, device: Device) -> None:
        """Blocking adds the addresses to IR-BLOCKLIST referenced at the top and saves once; blocking again
        sends no configuration; undo removes exactly what was added."""
        args = {"addresses": [A, NET]}
        snap, result, check = device.run("block_ip", args)
        st = device.sim.state
        assert result.changed and check.in_effect
        assert st.blocklist == {A, NET}
        assert device.sim.rule_references_group
        assert st.saved_blocklist == {A, NET}
        assert device.sim.saves == SAVES_PER_CHANGE[device.device_type]
        assert _one_entry(device)
        assert snap.data["already_blocked"] == []

        device.sim.reset_counters()
        _, again, check2 = device.run("block_ip", args)
        assert not again.changed and check2.in_effect
        assert again.details["applied_lines"] == [] and again.details["already_blocked"] == [A, NET]
        assert device.sim.saves == 0 and _changes(device) == 0

        undone, after = device.undo("block_ip", args, snap)
        assert undone.changed and not after.in_effect
        assert st.blocklist == set() and st.saved_blocklist == set()
        assert device.sim.rule_references_group  # the scaffold stays (documented)

    def test_undo_keeps_members_present_before(self, device: Device) -> None:
        """Addresses already blocked before the action are recorded in the snapshot and survive its undo."""
        device.run("block_ip", {"addresses": [A]})
        args = {"addresses": [A, B]}
        snap, result, _ = device.run("block_ip", args)
        assert snap.data["already_blocked"] == [A] and result.details["added"] == [B]
        undone, _ = device.undo("block_ip", args, snap)
        assert undone.details["kept"] == [A]
        assert device.sim.state.blocklist == {A}

    def test_unblock_list_and_undo_reblocks(self, device: Device) -> None:
        """unblock_ip removes members, list_blocked reads them, and undoing the unblock blocks them again."""
        device.run("block_ip", {"addresses": [A, B]})
        snap, result, check = device.run("unblock_ip", {"addresses": [B, C]})
        assert result.details["removed"] == [B] and result.details["not_blocked"] == [C] and check.in_effect
        assert device.sim.state.blocklist == {A}
        _, listed, _ = device.run("list_blocked", {})
        assert listed.details["blocked"] == [A] and not listed.changed
        device.undo("unblock_ip", {"addresses": [B, C]}, snap)
        assert device.sim.state.blocklist == {A, B}


class TestDeviceErrors:
    def test_refused_line_reports_applied_lines_and_cleans_up(self, device: Device) -> None:
        """A refused line fails with the device's message, lists the accepted lines, and they are removed."""
        device.run("block_ip", {"addresses": [A]})      # scaffold in place, one member before
        device.sim.reset_counters()
        device.sim.inject(r"100\.2\.0\.9", "reject")
        with pytest.raises(Rejected) as info:
            device.run("block_ip", {"addresses": [B, C]})
        detail = info.value.detail
        assert any("100.2.0.8" in ln for ln in detail["applied_lines"])
        assert "100.2.0.9" in detail["failed_line"] and detail["device_message"]
        assert detail["failed_line"] not in detail["applied_lines"]
        assert detail["cleanup"]["complete"], detail["cleanup"]
        assert device.sim.state.blocklist == {A}
        candidate = getattr(device.sim.state, "candidate", None)
        if candidate is not None:
            assert candidate == getattr(device.sim.state, "committed", None) or \
                device.sim.state.candidate_blocklist == {A}

    def test_connection_lost_mid_config_then_retry_reads_state(self, device: Device) -> None:
        """A dropped session mid-change is an Unreachable with unknown outcome; the next attempt reads the device
        and completes only what is missing."""
        device.sim.inject(r"100\.2\.0\.8", "drop")
        with pytest.raises(Unreachable) as info:
            device.run("block_ip", {"addresses": [A, B, C]})
        assert info.value.detail["outcome"] == "unknown"
        assert "applied_lines" in info.value.detail
        _, _, check = device.run("block_ip", {"addresses": [A, B, C]})
        assert check.in_effect and device.sim.state.blocklist == {A, B, C}
        assert device.sim.state.saved_blocklist == {A, B, C}


class TestBatching:
    def test_200_addresses_one_session_one_save(self, device: Device) -> None:
        """200 addresses go through one session, one configuration entry and one save/commit."""
        base = ipaddress.ip_address("100.3.0.1")
        addrs = [str(base + i) for i in range(200)]
        _, _, check = device.run("block_ip", {"addresses": addrs})
        assert check.in_effect and len(device.sim.state.blocklist) == 200
        assert device.sim.sessions == 1
        assert _one_entry(device)
        assert device.sim.saves == SAVES_PER_CHANGE[device.device_type]


class TestTimeouts:
    @pytest.mark.parametrize("device_type", ["cisco_asa", "juniper_junos"])
    def test_reply_delayed_beyond_timeout(self, device_type: str, sim_factory, tmp_path, host_key) -> None:
        """A reply slower than the command timeout raises Timeout (outcome unknown); verify then shows the truth
        and a retry completes."""
        from tests.integration.firewall.conftest import make_device

        dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key, timeout=1.0)
        dev.sim.inject(r"100\.2\.0\.8", "delay", seconds=2.5)
        with pytest.raises(Timeout) as info:
            dev.run("block_ip", {"addresses": [A, B]})
        assert info.value.detail["outcome"] == "unknown"
        with dev.session() as s:
            seen = dev.conn.verify(s, "block_ip", {"addresses": [A, B]})
        assert seen.in_effect == ({A, B} <= dev.sim.state.blocklist)
        _, _, check = dev.run("block_ip", {"addresses": [A, B]})
        assert check.in_effect and dev.sim.state.blocklist == {A, B}


class TestIpv6:
    @pytest.mark.parametrize("device_type", ["cisco_asa", "paloalto_panos"])
    def test_ipv6_hosts_and_prefixes(self, device_type: str, sim_factory, tmp_path, host_key) -> None:
        """Dialects that take IPv6 block and unblock v6 hosts and prefixes next to v4 ones."""
        from tests.integration.firewall.conftest import make_device

        dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key)
        args = {"addresses": ["2a00:1450::1", "2a00:1450:4001::/48", A]}
        snap, _, check = dev.run("block_ip", args)
        assert check.in_effect and dev.sim.state.blocklist == {"2a00:1450::1", "2a00:1450:4001::/48", A}
        dev.undo("block_ip", args, snap)
        assert dev.sim.state.blocklist == set()
