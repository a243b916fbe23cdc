"""kill_sessions and capture_evidence against the double's sessions, tickets, processes and events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connectors.errors import InvalidInput
from connectors.types import ConnectorContext, Credentials, Target
from connectors.winrm_windows import WinRMWindowsConnector
from tests.doubles.wsman import LogonSession, UserSession, WindowsHost, WSManDouble


def populate(host: WindowsHost) -> None:
    """alice: console + disconnected RDP session and a network logon; bob: one session."""
    host.logons[0x5B8D9] = LogonSession(0x5B8D9, "CORP", "alice", "Kerberos:Interactive", 4)
    host.logons[0x6C001] = LogonSession(0x6C001, "CORP", "alice", "Kerberos:RemoteInteractive", 2)
    host.logons[0x7D002] = LogonSession(0x7D002, "CORP", "alice", "Kerberos:Network", 3)
    host.logons[0x8E003] = LogonSession(0x8E003, "CORP", "bob", "Kerberos:Interactive", 5)
    host.user_sessions += [UserSession("alice", 1, "console", "Active", 0x5B8D9),
                           UserSession("alice", 3, "", "Disc", 0x6C001),
                           UserSession("bob", 2, "rdp-tcp#0", "Active", 0x8E003)]


class TestKillSessions:
    def test_ends_only_that_users_sessions_and_tickets(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                       host: WindowsHost, make_target: Callable[..., Target],
                                                       creds: Credentials, ctx: ConnectorContext) -> None:
        """alice's sessions are logged off and all her logons purged (network one included); bob is untouched."""
        populate(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            assert not conn.verify(s, "kill_sessions", {"user": "CORP\\alice"}).in_effect
            result = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
            assert result.changed
            assert sorted(x["session_id"] for x in result.details["logged_off"]) == [1, 3]
            assert sorted(result.details["purged_logon_ids"]) == ["0x5b8d9", "0x6c001", "0x7d002"]
            check = conn.verify(s, "kill_sessions", {"user": "CORP\\alice"})
            assert check.in_effect, check.summary
            again = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
            assert not again.changed
        assert [u.user for u in host.user_sessions] == ["bob"]
        assert host.logons[0x8E003].tickets == 5
        assert host.logons[0x7D002].tickets == 0
        assert 0x5B8D9 not in host.logons

    def test_nobody_logged_on(self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
                              make_target: Callable[..., Target], creds: Credentials,
                              ctx: ConnectorContext) -> None:
        """With nobody logged on (quser writes to stderr and exits 1) there is nothing to do, and it is in effect."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            result = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
            assert not result.changed
            assert conn.verify(s, "kill_sessions", {"user": "CORP\\alice"}).in_effect

    def test_bad_user_refused_before_connecting(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                make_target: Callable[..., Target]) -> None:
        """validate rejects an injection attempt without any request reaching the host."""
        with pytest.raises(InvalidInput, match="user"):
            conn.validate(make_target(double), "kill_sessions", {"user": "alice'; Remove-Item C:\\ -Recurse; '"})
        assert double.journal == []


class TestCaptureEvidence:
    def test_files_reflect_host_state(self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
                                      make_target: Callable[..., Target], creds: Credentials,
                                      ctx: ConnectorContext) -> None:
        """Processes, connections, sessions, bounded logon events and firewall state come back as text files."""
        populate(host)
        host.processes.append((4242, "evil", 1, "C:\\Users\\alice\\evil.exe"))
        host.tcp.append(("10.0.0.21", 49800, "203.0.113.66", 443, "Established", 4242))
        host.events += [(f"2024-05-01 09:0{i}:00", 4625, f"failed logon {i}") for i in range(5)]
        before = (list(host.rules), dict(host.profiles), list(host.user_sessions))
        spec = conn.actions["capture_evidence"]
        assert not spec.mutating
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            result = conn.apply(s, "capture_evidence", {"max_events": 3}, conn.snapshot(s, "capture_evidence", {}))
        ev = result.details["evidence"]
        assert set(ev) == {"processes.txt", "tcp_connections.txt", "sessions.txt", "security_events.txt",
                           "firewall.txt"}
        assert "evil.exe" in ev["processes.txt"]
        assert "203.0.113.66" in ev["tcp_connections.txt"]
        assert "alice" in ev["sessions.txt"] and "bob" in ev["sessions.txt"]
        assert ev["security_events.txt"].count("TimeCreated") == 3
        assert "Domain Profile Settings" in ev["firewall.txt"]
        assert not result.changed
        assert (list(host.rules), dict(host.profiles), list(host.user_sessions)) == before

    def test_max_events_validated(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                  make_target: Callable[..., Target]) -> None:
        """max_events must be a small integer: anything else never reaches the script."""
        for bad in ("10; Stop-Computer", 0, 10_000, True):
            with pytest.raises(InvalidInput):
                conn.validate(make_target(double), "capture_evidence", {"max_events": bad})
