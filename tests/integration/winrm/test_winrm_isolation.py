"""Isolation of a Windows host through the connector, asserted on the WS-Management double's simulated state."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from connectors.errors import Rejected, VerifyFailed
from connectors.types import ConnectorContext, Credentials, Target
from connectors.winrm_windows import WinRMWindowsConnector
from tests.doubles.wsman import Rule, WindowsHost, WSManDouble

GROUP = "IR-Containment"


def fw_state(host: WindowsHost) -> tuple[Any, Any]:
    """Everything isolation may touch: profiles and all rules (deep copies; rule order has no meaning)."""
    return copy.deepcopy(host.profiles), sorted(copy.deepcopy(host.rules), key=lambda r: r.name)


def customise(host: WindowsHost) -> None:
    """A host that is not in the default state: mixed profile settings and a pre-existing rule in the group."""
    host.profiles["Domain"].enabled = "NotConfigured"
    host.profiles["Private"].enabled, host.profiles["Private"].inbound = "False", "Allow"
    host.profiles["Public"].outbound = "Allow"
    host.rules.append(Rule("IR-Containment-Legacy", "legacy quarantine exception", GROUP, "Inbound", "Allow",
                           remote=["10.1.2.0/24"], protocol="TCP", local_ports=["445"]))
    host.rules.append(Rule("RDP-In", "Remote Desktop", "Remote Desktop", local_ports=["3389"], protocol="TCP"))


def blocks(host: WindowsHost, direction: str, ip: str) -> bool:
    """Whether an enabled block rule of the group covers ``ip`` in ``direction``."""
    from tests.doubles.wsman.host import address_covers

    return any(address_covers(t, ip) for r in host.group_rules(GROUP)
               if r.action == "Block" and r.direction == direction and r.enabled == "True" for t in r.remote)


class TestIsolateRoundTrip:
    def test_isolate_verify_release_restores_exact_state(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                         host: WindowsHost, make_target: Callable[..., Target],
                                                         creds: Credentials, ctx: ConnectorContext) -> None:
        """Isolate, verify, undo: profiles and every pre-existing rule come back exactly as they were."""
        customise(host)
        before = fw_state(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            assert snap.data["rules"][0]["Name"] == "IR-Containment-Legacy"
            result = conn.apply(s, "isolate", {}, snap)
            assert result.changed
            assert conn.verify(s, "isolate", {}).in_effect
            assert {p.name: (p.enabled, p.inbound, p.outbound) for p in host.profiles.values()} == \
                {n: ("True", "Block", "Block") for n in ("Domain", "Private", "Public")}
            names = {r.name for r in host.group_rules(GROUP)}
            assert {"IR-Containment-Allow-WinRM-In", "IR-Containment-Block-In", "IR-Containment-Block-Out"} <= names
            assert all(n.startswith("IR-Containment-Keep-") for n in names - {
                "IR-Containment-Allow-WinRM-In", "IR-Containment-Block-In", "IR-Containment-Block-Out"})
            assert blocks(host, "Inbound", "8.8.8.8") and blocks(host, "Outbound", "2001:db8::1")
            assert not blocks(host, "Inbound", "127.0.0.1") and not blocks(host, "Outbound", "127.0.0.1")
            assert not host.allows_inbound("10.9.9.9", double.port)
            assert host.allows_inbound("127.0.0.1", double.port)
            undo = conn.undo(s, "isolate", {}, snap)
            assert undo.changed
            assert not conn.verify(s, "isolate", {}).in_effect
        assert fw_state(host) == before
        assert not host.tasks

    def test_block_ranges_are_the_exact_complement(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                   host: WindowsHost, make_target: Callable[..., Target],
                                                   creds: Credentials) -> None:
        """With several management addresses (and nothing else kept), the block ranges cover everything else and
        none of them. (With IPv6 management, link-local and multicast stay out of the ranges for neighbour
        discovery; the profile default still blocks them.)"""
        ctx = ConnectorContext(management_addresses=("127.0.0.1", "10.0.0.0/24", "2001:db8::5"),
                               connect_timeout=1.0, command_timeout=2.0)
        with conn.open(make_target(double, keep_dhcp_dns=False), creds, ctx) as s:  # type: ignore[attr-defined]
            conn.apply(s, "isolate", {}, conn.snapshot(s, "isolate", {}))
        for ip in ("127.0.0.1", "10.0.0.0", "10.0.0.255", "2001:db8::5"):
            assert not blocks(host, "Inbound", ip), ip
        for ip in ("0.0.0.0", "126.255.255.255", "127.0.0.2", "9.255.255.255", "10.0.1.0", "255.255.255.255",
                   "::", "2001:db8::4", "2001:db8::6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
            assert blocks(host, "Inbound", ip) and blocks(host, "Outbound", ip), ip
        allow = host.rule_named("IR-Containment-Allow-WinRM-In")[0]
        assert allow.local_ports == [str(double.port)]
        assert {str(ipaddress.ip_network(a, strict=False)) for a in allow.remote} == \
            {"127.0.0.1/32", "10.0.0.0/24", "2001:db8::5/128"}

    def test_rdp_allowed_only_when_configured(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                              host: WindowsHost, make_target: Callable[..., Target],
                                              creds: Credentials, ctx: ConnectorContext) -> None:
        """allow_rdp adds an RDP allow rule for the management addresses; without it there is none."""
        with conn.open(make_target(double, allow_rdp=True), creds, ctx) as s:  # type: ignore[attr-defined]
            conn.apply(s, "isolate", {}, conn.snapshot(s, "isolate", {}))
            assert conn.verify(s, "isolate", {}).in_effect
        rdp = host.rule_named("IR-Containment-Allow-RDP-In")
        assert rdp and rdp[0].local_ports == ["3389"] and rdp[0].remote == ["127.0.0.1"]
        assert host.allows_inbound("127.0.0.1", 3389)


class TestIdempotence:
    def test_second_isolate_changes_nothing(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                            host: WindowsHost, make_target: Callable[..., Target],
                                            creds: Credentials, ctx: ConnectorContext) -> None:
        """Isolating an isolated host says so, registers no task and leaves the rules alone."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            first = conn.snapshot(s, "isolate", {})
            conn.apply(s, "isolate", {}, first)
            state = fw_state(host)
            n_scripts = len(double.scripts)
            second = conn.snapshot(s, "isolate", {})
            assert second.data["already_isolated"]
            again = conn.apply(s, "isolate", {}, second)
            assert not again.changed and "already isolated" in again.summary
            assert fw_state(host) == state
            assert not any("Register-ScheduledTask" in x for x in double.scripts[n_scripts:])
            assert not conn.undo(s, "isolate", {}, second).changed
            assert conn.verify(s, "isolate", {}).in_effect
            assert conn.undo(s, "isolate", {}, first).changed
            assert not conn.undo(s, "isolate", {}, first).changed


class TestDeadman:
    def test_task_registered_before_apply_and_deleted_after_verify(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """The journal shows: task created, then rules, then a read over a new connection, then task deleted."""
        with conn.open(make_target(double, deadman_minutes=7), creds, ctx) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            start = len(double.scripts)
            result = conn.apply(s, "isolate", {}, snap)
        scripts = double.scripts[start:]
        create = next(i for i, x in enumerate(scripts) if "Register-ScheduledTask" in x)
        rules = next(i for i, x in enumerate(scripts) if "New-NetFirewallRule" in x)
        delete = next(i for i, x in enumerate(scripts) if "Unregister-ScheduledTask" in x and "-ErrorAction" not in x)
        reread = max(i for i, x in enumerate(scripts[:delete]) if "Get-NetFirewallRule" in x)
        assert create < rules < reread < delete
        assert "(Get-Date).AddMinutes(7)" in scripts[create]
        assert not host.tasks
        assert result.details["deadman"]["deleted_after_verify"]
        assert result.details["deadman"]["minutes"] == 7
        news = [e for e in double.journal if e.new_connection]
        assert len(news) >= 2, "verify after apply must use a new connection"

    def test_lockout_leaves_task_which_frees_host(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                  host: WindowsHost, make_target: Callable[..., Target],
                                                  creds: Credentials) -> None:
        """Wrong management address: verify cannot reconnect, the task stays, firing it restores everything."""
        customise(host)
        before = fw_state(host)
        bad = ConnectorContext(management_addresses=("10.9.9.9",), connect_timeout=1.0, command_timeout=1.0)
        s = conn.open(make_target(double), creds, bad)
        try:
            snap = conn.snapshot(s, "isolate", {})
            with pytest.raises(VerifyFailed, match="dead-man task IR-Containment-Revert will revert"):
                conn.apply(s, "isolate", {}, snap)
        finally:
            s.close()
        assert "IR-Containment-Revert" in host.tasks
        assert double.refused >= 1
        assert not host.allows_inbound("127.0.0.1", double.port)
        double.fire_task("IR-Containment-Revert")
        assert fw_state(host) == before
        assert not host.tasks
        assert host.file_exists("C:\\ProgramData\\IR-Containment\\reverted-by-deadman.txt")
        good = ConnectorContext(management_addresses=("10.9.9.9",), connect_timeout=1.0, command_timeout=2.0)
        with conn.open(make_target(double), creds, good) as s2:  # type: ignore[attr-defined]
            check = conn.verify(s2, "isolate", {})
            assert not check.in_effect
            assert check.observed["reverted_by_deadman"] is True
            assert "reverted by the dead-man task" in check.summary
            assert not conn.undo(s2, "isolate", {}, snap).changed

    def test_revert_after_agent_vanished(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                         host: WindowsHost, make_target: Callable[..., Target],
                                         creds: Credentials, ctx: ConnectorContext) -> None:
        """Simulate the agent losing the host right after apply: the task is still there and fires."""
        before = fw_state(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            original = s.reconnect

            def lose_host() -> None:
                original()
                double.inject("*", "drop", times=100)

            s.reconnect = lose_host  # type: ignore[method-assign]
            with pytest.raises(VerifyFailed):
                conn.apply(s, "isolate", {}, snap)
            double.faults.clear()
        assert "IR-Containment-Revert" in host.tasks and host.group_rules(GROUP)
        double.fire_task("IR-Containment-Revert")
        assert fw_state(host) == before


class TestDeadmanHoldsOnHardenedHosts:
    def test_revert_runs_under_gpo_allsigned_execution_policy(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials) -> None:
        """A GPO "allow only signed scripts" (MachinePolicy AllSigned) beats -ExecutionPolicy Bypass for a script
        file; the revert is an -EncodedCommand inside the task, so it still frees the host."""
        host.execution_policy["MachinePolicy"] = "AllSigned"
        customise(host)
        before = fw_state(host)
        bad = ConnectorContext(management_addresses=("10.9.9.9",), connect_timeout=1.0, command_timeout=1.0)
        s = conn.open(make_target(double), creds, bad)
        try:
            with pytest.raises(VerifyFailed):
                conn.apply(s, "isolate", {}, conn.snapshot(s, "isolate", {}))
        finally:
            s.close()
        task = host.tasks["IR-Containment-Revert"]
        assert "-File" not in task.arguments and "-EncodedCommand" in task.arguments
        double.fire_task("IR-Containment-Revert")
        assert host.task_failures == []
        assert fw_state(host) == before

    def test_nothing_executed_from_programdata(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                              host: WindowsHost, make_target: Callable[..., Target],
                                              creds: Credentials, ctx: ConnectorContext) -> None:
        """No script file is written for the task: a local user who can write under ProgramData cannot swap what
        SYSTEM runs at the deadline."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            conn.apply(s, "isolate", {}, snap)
            assert not any(p.endswith((".ps1", ".xml")) for p in host.files)
            conn.undo(s, "isolate", {}, snap)


class TestOldHostsRefused:
    def test_host_without_netsecurity_is_refused_before_any_change(
            self, conn: WinRMWindowsConnector, host: WindowsHost, pki: Any, make_target: Callable[..., Target],
            creds: Credentials, ctx: ConnectorContext) -> None:
        """Windows 7 / 2008 R2 (PowerShell 2.0: no ConvertTo-Json, no NetSecurity) get a clear refusal."""
        host.netsecurity = False
        host.ps_version = "2.0"
        with WSManDouble(host, tls=pki.server) as dbl, \
                conn.open(make_target(dbl), creds, ctx) as s:  # type: ignore[attr-defined]
            before = fw_state(host)
            with pytest.raises(Rejected, match="NetSecurity.*Server 2012") as err:
                conn.snapshot(s, "isolate", {})
            assert not err.value.transient
        assert fw_state(host) == before and not host.tasks


def blocks_by_name(host: WindowsHost, name: str, ip: str) -> bool:
    from tests.doubles.wsman.host import address_covers

    return any(address_covers(t, ip) for r in host.rule_named(name) for t in r.remote)


class TestStateDirectory:
    STATE_DIR = "C:\\ProgramData\\IR-Containment"

    def test_folder_pre_created_by_a_local_user_is_not_trusted(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """mallory pre-creates the state folder (ProgramData lets any user) and later rewrites state.json to add
        an allow-all rule; what the agent reads back from state.json (the pre-isolation state it records when it
        finds the host already isolated) is the real one, not hers, and undo restores the real state."""
        import json

        host.ensure_dir(self.STATE_DIR, owner="S-1-5-21-1-mallory")
        host.write_as_user("mallory", self.STATE_DIR + "\\reverted-by-deadman.txt", "2020-01-01T00:00:00")
        before = fw_state(host)
        target = make_target(double)
        with conn.open(target, creds, ctx) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            assert not snap.data.get("saved_on_host")
            result = conn.apply(s, "isolate", {}, snap)
            assert conn.verify(s, "isolate", {}).observed["reverted_by_deadman"] is False
        assert any("not trusted" in w for w in result.warnings)
        sec = host.security_of(self.STATE_DIR)
        assert sec is not None and sec.protected and sec.owner in ("S-1-5-32-544", "S-1-5-18")
        assert set(sec.aces) == {"S-1-5-18", "S-1-5-32-544"}
        forged = {"dialect": "netsecurity", "profiles": [], "rules": [
            {"Name": "IR-Containment-Backdoor", "DisplayName": "x", "Direction": "Inbound", "Action": "Allow",
             "Enabled": "True", "Profile": "Any", "RemoteAddress": ["Any"], "Protocol": "Any", "LocalPort": ["Any"]}]}
        assert not host.write_as_user("mallory", self.STATE_DIR + "\\state.json", json.dumps(forged))
        with conn.open(target, creds, ctx) as s:  # type: ignore[attr-defined]
            again = conn.snapshot(s, "isolate", {})
            assert again.data["already_isolated"] and again.data["saved_on_host"]["profiles"]
            assert "IR-Containment-Backdoor" not in json.dumps(again.data["saved_on_host"])
            assert conn.undo(s, "isolate", {}, snap).changed
        assert fw_state(host) == before
        assert not host.rule_named("IR-Containment-Backdoor")


class TestGroupPolicyFirewall:
    def test_non_merging_gpo_is_refused_naming_the_setting(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """CIS L1 / STIG: "Apply local firewall rules: No" on the Public profile — local rules would be ignored, so
        isolation is refused before anything changes, with the GPO setting named (not reported as isolated)."""
        host.gpo_profiles["Public"].allow_local_rules = "False"
        host.gpo_rules.append(Rule("GPO-WinRM", "WinRM from GPO", "GPO", protocol="TCP",
                                   local_ports=[str(double.port)]))  # the GPO must let WinRM in itself
        before = fw_state(host)
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            with pytest.raises(Rejected, match="AllowLocalFirewallRules.*Public") as err:
                conn.apply(s, "isolate", {}, conn.snapshot(s, "isolate", {}))
            assert not err.value.transient
        assert fw_state(host) == before and not host.tasks
        assert host.allows_inbound("10.9.9.9", double.port)

    def test_gpo_forcing_outbound_allow_is_refused(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """A GPO that sets the firewall off for a profile beats the local setting: refused, naming it."""
        host.gpo_profiles["Domain"].enabled = "False"
        with conn.open(make_target(double), creds, ctx) as s, \
                pytest.raises(Rejected, match="Group Policy.*Domain.*Enabled"):  # type: ignore[attr-defined]
            conn.snapshot(s, "isolate", {})
        assert not host.tasks

    def test_verify_reads_the_active_store(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """A GPO refresh that turns local rule merging off after isolation: the local store still holds our rules,
        the ActiveStore does not — verify says not isolated."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            conn.apply(s, "isolate", {}, conn.snapshot(s, "isolate", {}))
            assert conn.verify(s, "isolate", {}).in_effect
            host.gpo_profiles["Public"].allow_local_rules = "False"
            host.gpo_rules.append(Rule("GPO-WinRM", "WinRM from GPO", "GPO", protocol="TCP",
                                       local_ports=[str(double.port)]))
            check = conn.verify(s, "isolate", {})
        assert not check.in_effect
        assert host.allows_inbound("10.9.9.9", double.port)


class TestHostQuirks:
    def test_constrained_language_mode_is_refused_clearly(
            self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
            make_target: Callable[..., Target], creds: Credentials, ctx: ConnectorContext) -> None:
        """Under an AppLocker/WDAC script policy PowerShell runs in ConstrainedLanguage (about_Language_Modes) and
        .NET method calls fail; isolation is refused up front with that reason, not half-applied."""
        host.language_mode = "ConstrainedLanguage"
        before = fw_state(host)
        with conn.open(make_target(double), creds, ctx) as s, \
                pytest.raises(Rejected, match="runs in ConstrainedLanguage mode.*AppLocker"):  # type: ignore[attr-defined]
            conn.snapshot(s, "isolate", {})
        assert fw_state(host) == before and not host.tasks

    def test_utf8_bom_in_front_of_output(self, conn: WinRMWindowsConnector, double: WSManDouble, host: WindowsHost,
                                         make_target: Callable[..., Target], creds: Credentials,
                                         ctx: ConnectorContext) -> None:
        """With code page 65001 output can start with a UTF-8 BOM (pywinrm issue 111): JSON and CLIXML still
        parse."""
        host.output_bom = True
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            assert conn.apply(s, "isolate", {}, snap).changed
            res = s.run_script("Write-Nonsense 'x'")
            assert res.stderr.startswith("Write-Nonsense : The term 'Write-Nonsense' is not recognized")
            conn.undo(s, "isolate", {}, snap)
