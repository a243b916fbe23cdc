"""ssh_linux refuses every value that could smuggle shell or ruleset syntax, before any connection."""

from __future__ import annotations

import pytest

from connectors.errors import InvalidInput
from connectors.ssh_linux import SshLinuxConnector
from connectors.ssh_linux.validation import parse_isolate_args, parse_management, parse_user
from connectors.types import ConnectorContext, Target

TARGET = Target("victim", "host", "10.77.0.20", "ssh_linux")

BAD_ADDRESSES = [
    "10.0.0.1; rm -rf /", "10.0.0.1\nflush ruleset", "$(reboot)", "`id`", "10.0.0.1 10.0.0.2", " 10.0.0.1",
    "10.0.0.1 ", "１０.0.0.1", "10.0.0.٣", "10.0.0.1/8", "0.0.0.0", "::", "0.0.0.0/0", "::/0", "224.0.0.1",
    "127.0.0.1", "10.0.0.1/33", "10.0.0.5/24", "host.example", "", "10.0.0.1' accept", "a" * 300, "fe80::1%eth0",
    "fe80::1%;reboot",
]
# what can never be a name (issue 17: escape, don't forbid — everything else reaches the host shlex-quoted)
BAD_USERS = [
    "bob\nid", "", "b" * 257, "DOMAIN\\", "\\bob", "DOM AIN\\bob", "DOMAIN\\bob\n", "bob\x00", "tab\tbob",
    ".", "..", None, 5,
]
# names a host's NSS may know, shell metacharacters included: accepted, and inert on the host
ESCAPED_USERS = [
    "o'brien", "bob; id", "$(touch {marker})", "`touch {marker}`", "bob smith", "-bob", "--help", "ｂob", "bob٣",
    "b" * 65, "bob/..", "bob*", "bob?", 'bob"', "bob|touch {marker}", "DOMAIN\\bob;touch {marker}", "a(b)c",
]


class TestManagementAddresses:
    @pytest.mark.parametrize("value", BAD_ADDRESSES)
    def test_injection_and_nonsense_refused(self, value: str) -> None:
        """Every malformed, too-wide or special management address raises InvalidInput naming the field."""
        with pytest.raises(InvalidInput) as err:
            parse_management([value])
        assert "management" in str(err.value)

    def test_string_instead_of_list_refused(self) -> None:
        """A bare string is not silently iterated character by character."""
        with pytest.raises(InvalidInput, match="list"):
            parse_management("10.0.0.1")

    def test_empty_list_refused(self) -> None:
        """No management address at all would cut the agent off."""
        with pytest.raises(InvalidInput, match="cut the agent off"):
            parse_management([])

    def test_valid_mixed_list_deduplicated(self) -> None:
        """IPv4/IPv6 hosts and reasonable networks parse; duplicates collapse in order."""
        nets = parse_management(["10.77.0.10", "fd00::10", "10.9.0.0/24", "10.77.0.10"])
        assert [str(n) for n in nets] == ["10.77.0.10/32", "fd00::10/128", "10.9.0.0/24"]

    def test_connector_validate_names_field_and_value(self) -> None:
        """validate() rejects before connecting, quoting the offending value."""
        with pytest.raises(InvalidInput) as err:
            SshLinuxConnector().validate(TARGET, "isolate", {"management": ["10.0.0.1;reboot"]})
        assert "management" in str(err.value) and "10.0.0.1;reboot" in str(err.value)


class TestIsolateArguments:
    @pytest.mark.parametrize("args", [
        {"ssh_port": "22; id"}, {"ssh_port": 0}, {"ssh_port": 70000}, {"ssh_port": True}, {"ssh_port": "２２"},
        {"confirm_seconds": 3}, {"confirm_seconds": -1}, {"confirm_seconds": "5 ; id"}, {"confirm_seconds": 1e9},
        {"confirm_seconds": 86401}, {"cut_sessions": "yes"}, {"confirm": 1}, {"bogus": 1},
    ])
    def test_bad_arguments_refused(self, args: dict[str, object]) -> None:
        """Ports, delays and flags must be exactly typed; unknown arguments are refused too."""
        with pytest.raises(InvalidInput):
            SshLinuxConnector().validate(TARGET, "isolate", args)

    def test_defaults_from_context(self) -> None:
        """Without args, management addresses and the confirm delay come from the agent's context."""
        a = parse_isolate_args({}, ("10.77.0.10",), 120)
        assert ([str(n) for n in a.management], a.ssh_port, a.confirm_seconds, a.cut_sessions, a.confirm) == \
            (["10.77.0.10/32"], 22, 120, True, True)

    def test_preview_without_context_addresses_refused(self) -> None:
        """A dry run with no management address anywhere fails instead of planning a lock-out."""
        with pytest.raises(InvalidInput, match="management_addresses"):
            SshLinuxConnector().preview(TARGET, "isolate", {}, ConnectorContext())

    def test_zero_confirm_disables_timer(self) -> None:
        """confirm_seconds=0 is the explicit way to run without a dead-man timer."""
        assert parse_isolate_args({"confirm_seconds": 0}, ("10.0.0.1",)).confirm_seconds == 0


class TestUserNames:
    @pytest.mark.parametrize("value", BAD_USERS)
    def test_bad_user_names_refused(self, value: object) -> None:
        """Empty, overlong, control characters, '.'/'..', a malformed DOMAIN\\ part: refused before connecting."""
        with pytest.raises(InvalidInput) as err:
            SshLinuxConnector().validate(TARGET, "kill_sessions", {"user": value})
        assert "user" in str(err.value)

    @pytest.mark.parametrize("value", ESCAPED_USERS)
    def test_any_other_name_is_accepted_and_inert_in_the_shell(self, value: str, tmp_path) -> None:
        """The resolve step the host runs, run here by bash: the name is data (no command runs), unknown → NOUSER."""
        import subprocess

        from connectors.ssh_linux.usersessions import _resolve
        marker = tmp_path / "ran"
        user = parse_user(value.format(marker=marker))
        SshLinuxConnector().validate(TARGET, "kill_sessions", {"user": str(user)})
        out = subprocess.run(["bash", "-c", _resolve(user)], capture_output=True, text=True, timeout=10, check=False)
        assert "@@NOUSER" in out.stdout, out
        assert not marker.exists()

    @pytest.mark.parametrize("value,candidates", [
        ("alice", ["alice"]), ("svc.backup-01", ["svc.backup-01"]), ("_apt", ["_apt"]),
        ("LAB\\alice", ["LAB\\alice", "alice@LAB", "alice"]), ("a" * 64, ["a" * 64]),
    ])
    def test_good_names_and_domain_spellings(self, value: str, candidates: list[str]) -> None:
        """POSIX names pass; a DOMAIN\\ prefix is split and tried as winbind and sssd spell it."""
        assert parse_user(value).candidates() == candidates

    def test_unknown_argument_refused(self) -> None:
        """kill_sessions takes only ``user``."""
        with pytest.raises(InvalidInput, match="not kill_sessions arguments"):
            SshLinuxConnector().validate(TARGET, "kill_sessions", {"user": "bob", "signal": "HUP"})
