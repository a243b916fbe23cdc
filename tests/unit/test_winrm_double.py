"""The WS-Management double's Windows model, checked directly: each documented behaviour it claims, failures first.

These pin the double itself, so a later edit cannot quietly make it agree with whatever the connector sends.
"""

from __future__ import annotations

import pytest

from tests.doubles.wsman import LogonSession, Rule, WindowsHost
from tests.doubles.wsman.interpreter import Interpreter

QUSER_STOP = ("$ErrorActionPreference = 'Stop'\n$r = [ordered]@{}\n$r.quser = (& quser.exe 2>&1 | Out-String)\n"
              "$r | ConvertTo-Json -Compress")


def run(host: WindowsHost, script: str, user: str = "Administrator") -> tuple[str, str, int]:
    return Interpreter(host, user, []).run_script(script)


class TestNativeStderr:
    def test_windows_powershell_51_terminates_on_redirected_stderr(self) -> None:
        """5.1 + Stop + 2>&1: quser's "No User exists" becomes a terminating NativeCommandError (#3996/#4002)."""
        out, err, rc = run(WindowsHost(ps_version="5.1"), QUSER_STOP)
        assert rc == 1 and "NativeCommandError" in err and out == ""

    def test_powershell_7_passes_stderr_through(self) -> None:
        """7.2+ (PR #13361): the same script completes and the text is plain output."""
        out, err, rc = run(WindowsHost(ps_version="7.4"), QUSER_STOP)
        assert rc == 0 and "No User exists" in out and err == ""


class TestFirewallStores:
    def test_gpo_without_merge_ignores_local_rules(self) -> None:
        """AllowLocalFirewallRules False: a local block rule is not in the ActiveStore and does not block."""
        host = WindowsHost()
        host.rules.append(Rule("blk", "blk", "G", "Inbound", "Block", remote=["10.9.9.9"]))
        assert not host.allows_inbound("10.9.9.9", 5986)
        host.gpo_profiles["Public"].allow_local_rules = "False"
        assert host.allows_inbound("10.9.9.9", 5986) is False  # default inbound Block still applies
        host.gpo_rules.append(Rule("gpo-winrm", "w", "GPO", protocol="TCP", local_ports=["5986"]))
        assert host.allows_inbound("10.9.9.9", 5986)
        assert any(r.name == "blk" for r in host.active_rules())  # still merged for Domain and Private
        for p in host.gpo_profiles.values():
            p.allow_local_rules = "False"
        assert all(r.name != "blk" for r in host.active_rules())

    def test_block_beats_allow(self) -> None:
        """MS-FASP FW_RULE_ACTION: a matching block rule wins over a matching allow rule."""
        host = WindowsHost()
        host.rules.append(Rule("blk", "blk", "G", "Inbound", "Block", remote=["Any"]))
        assert not host.allows_inbound("127.0.0.1", 5986)


class TestExecutionPolicy:
    @pytest.mark.parametrize("scopes,process,expected", [
        ({"MachinePolicy": "AllSigned"}, "Bypass", "AllSigned"),
        ({"UserPolicy": "Restricted"}, "Bypass", "Restricted"),
        ({"CurrentUser": "AllSigned"}, "Bypass", "Bypass"),
        ({}, None, "RemoteSigned"),
    ])
    def test_precedence(self, scopes: dict[str, str], process: str | None, expected: str) -> None:
        """MachinePolicy > UserPolicy > Process > CurrentUser > LocalMachine (about_Execution_Policies)."""
        host = WindowsHost()
        host.execution_policy.update(scopes)
        assert host.effective_execution_policy(process) == expected


class TestTicketsAndLanguage:
    def test_purge_of_another_logon_needs_tcb(self) -> None:
        """klist purge -li <other luid> fails for an administrator, works as SYSTEM (KERB_PURGE_TKT_CACHE_REQUEST)."""
        host = WindowsHost()
        host.logons[0x5B8D9] = LogonSession(0x5B8D9, "CORP", "alice")
        script = ("$r = [ordered]@{}\n& klist.exe purge -li 0x5b8d9 | Out-Null; $r.'purge_0x5b8d9' = $LASTEXITCODE\n"
                  "$r | ConvertTo-Json -Compress")
        assert '"purge_0x5b8d9":1' in run(host, script)[0] and host.logons[0x5B8D9].tickets == 2
        assert '"purge_0x5b8d9":0' in run(host, script, user="SYSTEM")[0] and host.logons[0x5B8D9].tickets == 0

    def test_constrained_language_blocks_dotnet_calls(self) -> None:
        """about_Language_Modes: [IO.File]::Exists is refused in ConstrainedLanguage."""
        host = WindowsHost()
        host.language_mode = "ConstrainedLanguage"
        _, err, rc = run(host, "$r = [ordered]@{}\n$r.reverted_by_deadman = $trusted -and [IO.File]::Exists('C:\\x')")
        assert rc == 1 and "MethodInvocationNotSupportedInConstrainedLanguage" in err
