"""kill_sessions and capture_evidence against the double's sessions, tickets, processes and events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connectors.errors import InvalidInput
from connectors.types import ConnectorContext, Credentials, Target
from connectors.winrm_windows import WinRMWindowsConnector
from tests.doubles.wsman import LogonSession, Process, SmbSession, UserSession, WindowsHost, WSManDouble


def populate(host: WindowsHost) -> None:
    """alice: console session, disconnected RDP session, an SMB session and a WinRM shell from her network logons,
    with their processes; bob: one RDP session. (The same state quser/klist would print, plus what they don't.)"""
    host.logons[0x5B8D9] = LogonSession(0x5B8D9, "CORP", "alice", "Kerberos:Interactive", 4, logon_type=2)
    host.logons[0x6C001] = LogonSession(0x6C001, "CORP", "alice", "Kerberos:RemoteInteractive", 2, logon_type=10)
    host.logons[0x7D002] = LogonSession(0x7D002, "CORP", "alice", "Kerberos:Network", 3, logon_type=3)
    host.logons[0x7D003] = LogonSession(0x7D003, "CORP", "alice", "NTLM:Network", 0, logon_type=3)
    host.logons[0x8E003] = LogonSession(0x8E003, "CORP", "bob", "Kerberos:RemoteInteractive", 5, logon_type=10)
    host.user_sessions += [UserSession("alice", 1, "console", "Active", 0x5B8D9),
                           UserSession("alice", 3, "", "Disc", 0x6C001),
                           UserSession("bob", 2, "rdp-tcp#0", "Active", 0x8E003)]
    host.user_processes += [Process(3100, "explorer.exe", 1, 0x5B8D9), Process(3300, "mimikatz.exe", 3, 0x6C001),
                            Process(5100, "wsmprovhost.exe", 0, 0x7D002), Process(5200, "beacon.exe", 0, 0x7D002),
                            Process(2200, "explorer.exe", 2, 0x8E003)]
    host.smb_sessions.append(SmbSession(0x4000000011, "CORP\\alice", "10.0.0.66", 0x7D003))
    host.wsman_shells["0B5E1D2C-3A4B-4C5D-8E9F-A0B1C2D3E4F5"] = ("CORP\\alice", 5100)


def alice_left(host: WindowsHost) -> list[object]:
    return ([u for u in host.user_sessions if u.user == "alice"] + [s for s in host.smb_sessions] +
            [p for p in host.user_processes if p.luid != 0x8E003] +
            [k for k, v in host.wsman_shells.items() if v[0].endswith("alice")])


class TestKillSessions:
    def test_ends_everything_of_that_user_and_nothing_else(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                           host: WindowsHost, make_target: Callable[..., Target],
                                                           creds: Credentials, ctx: ConnectorContext) -> None:
        """alice's interactive sessions are logged off, her SMB session closed, her WinRM shell removed and the
        processes of her network logon terminated; bob and the agent's own shell are untouched."""
        populate(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            assert not conn.verify(s, "kill_sessions", {"user": "CORP\\alice"}).in_effect
            result = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
            assert result.changed
            assert sorted(result.details["sessions"]) == [1, 3]
            assert result.details["smb_sessions"] == [0x4000000011]
            check = conn.verify(s, "kill_sessions", {"user": "CORP\\alice"})
            assert check.in_effect, check.summary
            again = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
            assert not again.changed
        assert alice_left(host) == []
        assert [u.user for u in host.user_sessions] == ["bob"] and host.logons[0x8E003].tickets == 5
        assert not any(luid in host.logons for luid in (0x5B8D9, 0x6C001, 0x7D002, 0x7D003))

    def test_ticket_purge_of_another_logon_is_best_effort(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """klist purge -li for alice's logon needs SeTcbPrivilege, which the WinRM admin token lacks: the kill still
        succeeds (the logon ends once nothing references it) and says so."""
        populate(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            result = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
        assert any("SeTcbPrivilege" in w for w in result.warnings)

    def test_german_host(self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
                         make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """On a de-DE host quser says "Aktiv"/"Getr.": nothing the connector decides on is localised text, so the
        kill finds the same sessions (an English quser parser found none and reported success)."""
        host.locale = "de-DE"
        populate(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            result = conn.apply(s, "kill_sessions", {"user": "CORP\\alice"}, conn.snapshot(s, "kill_sessions", {}))
            assert result.changed and conn.verify(s, "kill_sessions", {"user": "CORP\\alice"}).in_effect
        assert alice_left(host) == []

    def test_own_account_refused(self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
                                 make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """Ending the agent's own account's sessions would cut the containment: refused, nothing ended."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            with pytest.raises(InvalidInput, match="agent logs on with"):
                conn.apply(s, "kill_sessions", {"user": "Administrator"}, conn.snapshot(s, "kill_sessions", {}))
            assert host.wsman_shells

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
