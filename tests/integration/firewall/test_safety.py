"""What never reaches a device (injection corpus, protected ranges) and how connection problems are reported."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from connectors.errors import AuthError, HostKeyError, InvalidInput, Rejected, Unreachable
from connectors.types import Credentials, Secret
from tests.doubles.vendor_cli import new_host_key, write_known_hosts
from tests.integration.firewall.conftest import Device, make_device

CORPUS = [
    "100.2.0.7\nwrite erase", "100.2.0.7\r\nreload", "100.2.0.7; rm -rf /", "100.2.0.7 any", " 100.2.0.7",
    "100.2.0.7/32 extra", "１００.２.０.７", "١٠٠.٢.٠.٧", "100.2.0.7\x00", "1" * 5000, "100.2.0.7/" + "3" * 60,
    "0.0.0.0/0", "::/0", "100.2.0.7/0", "10.1.2.3", "192.168.1.0/24", "127.0.0.1", "169.254.1.1", "fe80::1",
    "fd00::1", "224.0.0.1", "255.255.255.255", "8.0.0.0/5", "45.0.0.0/9", "ff02::1", "", "not-an-ip",
    "100.2.0.7$(reboot)", "`id`", "100.2.0.7'", '100.2.0.7"', "100.2.0.7|tee", "[100.2.0.7]", "100.2.0.07a",
]
PROTECTED = ["198.18.0.0/15", "100.64.0.0/10", "45.0.0.0/8"]


@pytest.fixture
def asa(sim_factory, tmp_path: Path, host_key: paramiko.PKey) -> Device:
    return make_device(sim_factory("cisco_asa"), "cisco_asa", tmp_path, host_key)


class TestInjectionCorpus:
    @pytest.mark.parametrize("value", CORPUS, ids=lambda v: repr(v)[:30])
    def test_refused_before_any_connection(self, asa: Device, value: str) -> None:
        """Every hostile or forbidden value raises InvalidInput naming the field, and no connection is opened."""
        args = {"addresses": ["100.2.0.1", value], "protected": ["45.1.0.0/16"]}
        with pytest.raises(InvalidInput) as info:
            asa.conn.validate(asa.target, "block_ip", args)
            asa.session()  # only reached if validation wrongly passed
        assert info.value.message.startswith("addresses:")
        assert asa.sim.connections == 0

    @pytest.mark.parametrize("value", ["45.1.2.3", "45.0.0.0/7", "45.1.0.0/16"])
    def test_protected_ranges_refused(self, asa: Device, value: str) -> None:
        """An address overlapping a protected range passed by the engine is refused, naming that range."""
        with pytest.raises(InvalidInput, match="protected range 45.1.0.0/16"):
            asa.conn.validate(asa.target, "block_ip", {"addresses": [value], "protected": ["45.1.0.0/16"]})
        assert asa.sim.connections == 0

    def test_device_own_address_refused(self, asa: Device) -> None:
        """The device's own address is protected even when the engine forgot to pass it."""
        with pytest.raises(InvalidInput, match="protected"):
            asa.conn.validate(asa.target, "block_ip", {"addresses": ["127.0.0.1"], "allow_private": True})

    def test_private_allowed_only_on_request(self, asa: Device) -> None:
        """RFC1918 space is refused unless allow_private is true (then it reaches the device)."""
        with pytest.raises(InvalidInput, match="allow_private"):
            asa.conn.validate(asa.target, "block_ip", {"addresses": ["10.77.1.130"]})
        _, _, check = asa.run("block_ip", {"addresses": ["10.77.1.130"], "allow_private": True})
        assert check.in_effect and asa.sim.state.blocklist == {"10.77.1.130"}

    def test_option_values_are_checked_too(self, asa: Device) -> None:
        """Device options end up on the CLI as well: a hostile ACL name is refused before connecting."""
        from dataclasses import replace

        bad = replace(asa.target, options={**asa.target.options, "acl": "out\nwrite erase"})
        with pytest.raises(InvalidInput, match="options.acl"):
            asa.conn.validate(bad, "block_ip", {"addresses": ["100.2.0.7"]})
        assert asa.sim.connections == 0

    def test_unknown_device_type_lists_known(self, asa: Device) -> None:
        """An unknown device_type is an InvalidInput listing the supported ones."""
        from dataclasses import replace

        bad = replace(asa.target, options={"device_type": "cisco_pix"})
        with pytest.raises(InvalidInput, match="known: .*cisco_asa.*mikrotik_routeros"):
            asa.conn.validate(bad, "block_ip", {"addresses": ["100.2.0.7"]})


class TestConnectionErrors:
    def test_unknown_host_key_refused(self, asa: Device, tmp_path: Path) -> None:
        """A host key that is not pinned is refused (HostKeyError), nothing is sent."""
        from dataclasses import replace

        other = write_known_hosts(tmp_path / "other", [(asa.sim.port, new_host_key())])
        with pytest.raises(HostKeyError):
            asa.conn.open(asa.target, asa.creds, replace(asa.ctx, known_hosts=str(other)))
        assert asa.sim.sessions == 0

    def test_missing_known_hosts_refused(self, asa: Device) -> None:
        """Without any pin the connector refuses before connecting, unless ssh_strict is false on the device."""
        from dataclasses import replace

        with pytest.raises(HostKeyError):
            asa.conn.open(asa.target, asa.creds, replace(asa.ctx, known_hosts=None))
        assert asa.sim.connections == 0
        loose = replace(asa.target, options={**asa.target.options, "ssh_strict": False})
        with asa.conn.open(loose, asa.creds, replace(asa.ctx, known_hosts=None)):
            pass
        assert asa.sim.sessions == 1

    def test_bad_password_is_auth_error(self, asa: Device) -> None:
        """Wrong credentials map to AuthError without the password in the message."""
        creds = Credentials("admin", Secret("wrong-pw-123"), extra={"secret": Secret("en-s3cret")})
        with pytest.raises(AuthError) as info:
            asa.conn.open(asa.target, creds, asa.ctx)
        assert "wrong-pw-123" not in str(info.value)

    def test_closed_port_is_unreachable(self, asa: Device) -> None:
        """A refused TCP connection is Unreachable (transient)."""
        from dataclasses import replace

        port = asa.sim.port
        asa.sim.stop()
        with pytest.raises(Unreachable) as info:
            asa.conn.open(replace(asa.target, port=port), asa.creds, asa.ctx)
        assert info.value.transient


class TestCommitFailures:
    @pytest.mark.parametrize("device_type,pattern", [("juniper_junos", r"^commit confirmed"),
                                                     ("paloalto_panos", r"^commit partial admin")])
    def test_commit_failure_discards_candidate(self, device_type: str, pattern: str, sim_factory,
                                               tmp_path: Path, host_key: paramiko.PKey) -> None:
        """A failed commit is Rejected with the device's message and the accepted lines; the candidate is
        discarded so running and candidate match again."""
        dev = make_device(sim_factory(device_type), device_type, tmp_path, host_key)
        dev.sim.inject(pattern, "reject")
        with pytest.raises(Rejected) as info:
            dev.run("block_ip", {"addresses": ["100.2.0.7"]})
        assert info.value.detail["applied_lines"] and info.value.detail["cleanup"]["complete"]
        st = dev.sim.state
        assert st.blocklist == set()
        assert (st.candidate == st.committed) if device_type == "juniper_junos" else st.candidate_blocklist == set()

    def test_asa_save_failure_says_not_saved(self, asa: Device) -> None:
        """When write memory fails the change is active but the error says it was not saved."""
        asa.sim.inject(r"^write memory$", "reject")
        with pytest.raises(Rejected, match="NOT saved") as info:
            asa.run("block_ip", {"addresses": ["100.2.0.7"]})
        assert info.value.detail["saved"] is False
        assert asa.sim.state.blocklist == {"100.2.0.7"} and asa.sim.state.saved_blocklist == set()

    def test_junos_unconfirmed_commit_is_confirmed_next_time(self, sim_factory, tmp_path: Path,
                                                             host_key: paramiko.PKey) -> None:
        """A session lost between ``commit confirmed`` and ``commit`` leaves a pending rollback; the next run
        sees it (show system commit) and confirms instead of reporting 'already blocked'."""
        dev = make_device(sim_factory("juniper_junos"), "juniper_junos", tmp_path, host_key)
        dev.sim.inject(r"^commit$", "drop")
        with pytest.raises(Unreachable):
            dev.run("block_ip", {"addresses": ["100.2.0.7"]})
        assert dev.sim.state.pending_confirm == 5 and dev.sim.state.blocklist == {"100.2.0.7"}
        _, result, check = dev.run("block_ip", {"addresses": ["100.2.0.7"]})
        assert result.changed and result.details["persist"] == ["commit"] and check.in_effect
        assert dev.sim.state.pending_confirm is None
