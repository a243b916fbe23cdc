"""Pure parts of the WinRM connector: complement ranges, isolation gaps, CIM session footprints."""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

from connectors.winrm_windows.addresses import complement_ranges, token_span
from connectors.winrm_windows.plan import build_plan, isolation_gaps, merged_spans
from connectors.winrm_windows.usersessions import footprint, kill_script





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


class TestFootprint:
    RAW: ClassVar[dict[str, Any]] = {
        "logons": [{"Domain": "CORP", "Name": "alice", "LogonId": "375001"},
                   {"Domain": "CORP", "Name": "Alice", "LogonId": "375002"},
                   {"Domain": "OTHER", "Name": "alice", "LogonId": "375003"},
                   {"Domain": "CORP", "Name": "bob", "LogonId": "375004"},
                   {"Domain": "NT AUTHORITY", "Name": "SYSTEM", "LogonId": "999"}],
        "logon_types": [{"LogonId": "375001", "LogonType": 10}, {"LogonId": "375002", "LogonType": 3},
                        {"LogonId": "375003", "LogonType": 2}, {"LogonId": "375004", "LogonType": 2}],
        "session_processes": [{"LogonId": "375001", "ProcessId": "100"}, {"LogonId": "375002", "ProcessId": "200"},
                              {"LogonId": "375003", "ProcessId": "300"}, {"LogonId": "375004", "ProcessId": "400"}],
        "processes": [{"ProcessId": 100, "SessionId": 2, "Name": "explorer.exe"},
                      {"ProcessId": 200, "SessionId": 0, "Name": "beacon.exe"},
                      {"ProcessId": 300, "SessionId": 5, "Name": "x.exe"},
                      {"ProcessId": 400, "SessionId": 1, "Name": "explorer.exe"}],
        "smb": {"SessionId": "274877906961", "ClientUserName": "corp\\ALICE"},
        "shells": [{"ShellId": "0b5e1d2c-3a4b-4c5d-8e9f-a0b1c2d3e4f5", "Owner": "CORP\\alice", "ProcessId": 200},
                   {"ShellId": "not-a-guid'; calc", "Owner": "CORP\\alice", "ProcessId": 1}],
    }

    def test_domain_qualified_user(self) -> None:
        """CORP\\alice: her two logons (case-insensitive), the RDP session only (session 0 is never logged off),
        her SMB session (a single object, as ConvertTo-Json writes one element) and her shell with a valid GUID."""
        fp = footprint(self.RAW, "CORP\\alice")
        assert fp.logon_ids == [375001, 375002] and fp.ts_sessions == [2]
        assert sorted(p["pid"] for p in fp.processes) == [100, 200]
        assert fp.smb_sessions == [274877906961]
        assert fp.shells == ["0B5E1D2C-3A4B-4C5D-8E9F-A0B1C2D3E4F5"]

    def test_bare_user_matches_every_domain(self) -> None:
        """alice without a domain: OTHER\\alice too."""
        assert footprint(self.RAW, "alice").logon_ids == [375001, 375002, 375003]

    def test_kill_script_names_only_numbers_and_guids(self) -> None:
        """The user name never reaches the kill script."""
        script = kill_script(footprint(self.RAW, "CORP\\alice"))
        assert "alice" not in script.lower() and "& logoff.exe 2;" in script
        assert "Close-SmbSession -SessionId 274877906961 -Force" in script
