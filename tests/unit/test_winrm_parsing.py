"""Pure parts of the WinRM connector: complement ranges, isolation gaps, quser/klist parsing."""

from __future__ import annotations

import ipaddress

from connectors.winrm_windows.addresses import complement_ranges, token_span
from connectors.winrm_windows.plan import build_plan, isolation_gaps, merged_spans
from connectors.winrm_windows.sessions import parse_klist_sessions, parse_quser

QUSER = """ USERNAME              SESSIONNAME        ID  STATE   IDLE TIME  LOGON TIME
>alice                 console             1  Active      none   5/1/2024 8:00 AM
 bob                                       2  Disc         5     5/1/2024 7:00 AM
 a.very.long.user.nam  rdp-tcp#3           4  Active       .     5/1/2024 9:00 AM
"""
KLIST = """
Current LogonId is 0:0x5b8d9
[0] Session 1 0:0x5b8d9 CORP\\alice Kerberos:Interactive
[1] Session 0 0:0x3e7 CORP\\WIN01$ Negotiate:(0)
[2] Session 2 0:0x6C001 CORP\\bob Kerberos:RemoteInteractive
"""


class TestComplementRanges:
    def test_single_address(self) -> None:
        """One IPv4 management address leaves two IPv4 ranges and the whole IPv6 space."""
        assert complement_ranges([ipaddress.ip_network("10.0.0.5/32")]) == [
            "0.0.0.0-10.0.0.4", "10.0.0.6-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]

    def test_overlapping_and_edges(self) -> None:
        """Overlaps merge; networks at the edges of the space leave no empty ranges."""
        nets = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "0.0.0.0/16", "255.255.255.255/32", "::/0")]
        assert complement_ranges(nets) == ["1.0.0.0-255.255.255.254"]

    def test_property_covers_all_but_management(self) -> None:
        """Complement plus management is the whole space, with no overlap, for a mixed set."""
        nets = [ipaddress.ip_network(n) for n in ("10.0.0.0/24", "10.0.0.128/25", "192.168.1.7/32", "2001:db8::/64")]
        spans = merged_spans(complement_ranges(nets) + [str(n) for n in nets])
        assert spans == [(4, 0, 2**32 - 1), (6, 0, 2**128 - 1)]
        for n in nets:
            assert all(not (v == n.version and lo <= int(n.network_address) <= hi)
                       for v, lo, hi in merged_spans(complement_ranges(nets)))

    def test_token_span_forms(self) -> None:
        """Windows' printed forms (mask, prefix, range, bare) resolve to the same span; keywords to None."""
        assert token_span("10.0.0.0/255.255.255.0") == token_span("10.0.0.0/24") == (4, 167772160, 167772415)
        assert token_span("10.0.0.5") == token_span("10.0.0.5/32")
        assert token_span("Any") is None


class TestIsolationGaps:
    def test_isolated_state_has_no_gaps(self) -> None:
        """A state matching the plan (printed differently) is isolated; a disabled profile is a gap."""
        plan = build_plan(["10.0.0.5"], winrm_port=5986, allow_rdp=False)
        state = {"profiles": [{"Name": n, "Enabled": "True", "DefaultInboundAction": "Block",
                               "DefaultOutboundAction": "Block"} for n in ("Domain", "Private", "Public")],
                 "rules": [{"Name": r.name, "Direction": r.direction, "Action": r.action, "Enabled": "True",
                            "RemoteAddress": [x + "/32" if "-" not in x and ":" not in x else x for x in r.remote],
                            "LocalPort": [str(p) for p in r.local_ports] or ["Any"],
                            "Protocol": r.protocol} for r in plan.rules]}
        assert isolation_gaps(state, plan) == []
        state["profiles"][1]["Enabled"] = "False"
        state["rules"].append({"Name": "IR-Containment-Sneaky", "Direction": "Inbound", "Action": "Allow"})
        gaps = isolation_gaps(state, plan)
        assert any("Private" in g for g in gaps) and any("Sneaky" in g for g in gaps)


class TestSessionParsing:
    def test_quser(self) -> None:
        """Active, disconnected (no session name) and truncated-name rows are parsed."""
        rows = parse_quser(QUSER)
        assert [(r.user, r.session_name, r.session_id, r.state) for r in rows] == [
            ("alice", "console", 1, "Active"), ("bob", "", 2, "Disc"),
            ("a.very.long.user.nam", "rdp-tcp#3", 4, "Active")]

    def test_quser_no_users(self) -> None:
        """'No User exists' yields no rows."""
        assert parse_quser("No User exists for *\r\n") == []

    def test_klist_sessions(self) -> None:
        """Logon IDs are lower-cased hex with their account."""
        got = parse_klist_sessions(KLIST)
        assert [(s["luid"], s["domain"], s["user"]) for s in got] == [
            ("0x5b8d9", "CORP", "alice"), ("0x3e7", "CORP", "WIN01$"), ("0x6c001", "CORP", "bob")]
