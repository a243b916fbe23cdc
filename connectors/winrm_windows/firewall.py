"""Scripts that read, isolate and restore Windows Firewall (NetSecurity cmdlets), plus the dead-man switch.

State comes back as one JSON document with the firewall (canonical shape, see :mod:`plan`), the dead-man task's
presence, the revert marker and the saved pre-isolation state (``state.json``, recorded in the snapshot of a host
found already isolated; only read from a trusted folder).

Dead-man switch: a scheduled task running as SYSTEM whose action is ``powershell.exe -EncodedCommand <revert>``.
The revert script lives *inside* the task definition, not in a file: nothing under ``C:\\ProgramData`` is ever
executed (a local user could have pre-created or planted files there), and a Group Policy execution policy such as
"Allow only signed scripts" (MachinePolicy scope, which beats ``-ExecutionPolicy Bypass``; about_Execution_Policies)
does not apply to ``-EncodedCommand``, which is not a script file. The task is registered with
``Register-ScheduledTask -Xml`` (ISO ``StartBoundary``, no locale-dependent dates; ``StartWhenAvailable`` makes a
host that slept through the deadline revert on wake) and queried with ``Get-ScheduledTask``: no native
``schtasks.exe`` whose stderr Windows PowerShell 5.1 would turn into a terminating NativeCommandError.

Hosts without the NetSecurity module (Windows 7 / Server 2008 R2) are refused: they ship PowerShell 2.0, which has
no ``ConvertTo-Json`` and no ScheduledTasks module, so there is no honest fallback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import Rejected
from connectors.winrm_windows import fw_netsecurity
from connectors.winrm_windows.allowlist import host_addresses
from connectors.winrm_windows.plan import (
    GROUP,
    MARKER_FILE,
    STATE_DIR,
    STATE_FILE,
    TASK_NAME,
    IsolationPlan,
)
from connectors.winrm_windows.powershell import encode_command, ps_quote
from connectors.winrm_windows.session import WinRMSession

__all__ = [
    "DETECT_SCRIPT",
    "GROUP",
    "PRELUDE",
    "TASK_ARGUMENTS_LIMIT",
    "TASK_NAME",
    "apply_script",
    "delete_deadman_script",
    "detect_dialect",
    "read_state",
    "register_deadman_script",
    "revert_script",
    "task_arguments",
    "undo_script",
]

PRELUDE = ["$ErrorActionPreference = 'Stop'", "$ProgressPreference = 'SilentlyContinue'"]
#: Language mode first: under an AppLocker/WDAC script policy PowerShell runs in ConstrainedLanguage, where the
#: .NET calls the isolation scripts make ([IO.File], [Convert], Get-Acl's methods) fail (about_Language_Modes).
DETECT_SCRIPT = "\n".join([
    "[string]$ExecutionContext.SessionState.LanguageMode",
    "if (Get-Command New-NetFirewallRule -ErrorAction SilentlyContinue) { 'netsecurity' } else { 'netsh' }",
])
#: CreateProcess refuses command lines over 32,767 characters (including the terminating NUL); the task's
#: command line is ``powershell.exe`` + a space + the arguments.
TASK_ARGUMENTS_LIMIT = 32767 - 1 - len("powershell.exe ")
_TASK_XML = "\n".join([
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
    ("  <RegistrationInfo><Description>IR containment dead-man switch: reverts isolation unless the agent confirms "
    "it still reaches this host.</Description></RegistrationInfo>"),
    "  <Triggers><TimeTrigger><StartBoundary>@WHEN@</StartBoundary><Enabled>true</Enabled></TimeTrigger></Triggers>",
    ('  <Principals><Principal id="Author"><UserId>S-1-5-18</UserId><RunLevel>HighestAvailable</RunLevel>'
    "</Principal></Principals>"),
    ("  <Settings><MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy><DisallowStartIfOnBatteries>false"
    "</DisallowStartIfOnBatteries><StopIfGoingOnBatteries>false</StopIfGoingOnBatteries><StartWhenAvailable>true"
    "</StartWhenAvailable><ExecutionTimeLimit>PT10M</ExecutionTimeLimit><Enabled>true</Enabled></Settings>"),
    ('  <Actions Context="Author"><Exec><Command>powershell.exe</Command><Arguments>@ARGS@</Arguments></Exec>'
    "</Actions>"),
    "</Task>",
    "",
])


#: Owner Administrators, DACL protected from inheritance: SYSTEM and Administrators full control, nobody else.
STATE_DIR_SDDL = "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
_TRUSTED_SIDS = "@('S-1-5-18','S-1-5-32-544')"
#: ``$trusted``: the state folder exists, is owned by SYSTEM/Administrators, does not inherit, and grants nobody
#: else anything. Compared by SID, so a German "VORDEFINIERT\\Administratoren" reads the same.
STATE_DIR_CHECK = [
    f"$d = {ps_quote(STATE_DIR)}",
    "$a = if ([IO.Directory]::Exists($d)) { Get-Acl -LiteralPath $d } else { $null }",
    (f"$trusted = $a -ne $null -and $a.AreAccessRulesProtected -and {_TRUSTED_SIDS} -contains "
     "$a.GetOwner([Security.Principal.SecurityIdentifier]).Value -and @($a.GetAccessRules($true, $true, "
     f"[Security.Principal.SecurityIdentifier]) | Where-Object {{ {_TRUSTED_SIDS} -notcontains "
     "$_.IdentityReference.Value }).Count -eq 0"),
]
#: A folder someone else made is moved aside (kept for the investigation, never read) and ours is created with
#: :data:`STATE_DIR_SDDL`, so no local user can plant or rewrite state.json or the marker.
STATE_DIR_ENSURE = STATE_DIR_CHECK + [
    ("if ($a -ne $null -and -not $trusted) { [IO.Directory]::Move($d, $d + '.untrusted-' + "
     "[DateTime]::UtcNow.Ticks); $a = $null }"),
    ("if ($a -eq $null) { $s = New-Object Security.AccessControl.DirectorySecurity; "
     f"$s.SetSecurityDescriptorSddlForm('{STATE_DIR_SDDL}'); [void][IO.Directory]::CreateDirectory($d, $s) }}"),
]


#: What isolation keeps for the host's own network configuration (addresses, never localised text).
HOST_FACT_LINES = [
    "$r.dns_servers = @(Get-DnsClientServerAddress | ForEach-Object { $_.ServerAddresses } | Where-Object { $_ })",
    ("$r.dhcp_servers = @(Get-CimInstance -ClassName Win32_NetworkAdapterConfiguration -Filter 'DHCPEnabled = TRUE' "
     "| ForEach-Object { $_.DHCPServer } | Where-Object { $_ })"),
    "$r.computer_name = $env:COMPUTERNAME",
]


def _prelude(dialect: str) -> list[str]:
    return list(PRELUDE)


def _b64_text(text: str) -> str:
    """A PowerShell expression yielding ``text`` (base64 of UTF-8: no quoting of host-derived text needed)."""
    b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{b64}'))"


def _write_file_line(path: str, text: str) -> str:
    """Write a BOM-less UTF-8 data file (never a script: nothing the connector writes is executed)."""
    return f"[IO.File]::WriteAllText({ps_quote(path)}, {_b64_text(text)})"


def detect_dialect(sess: WinRMSession) -> str:
    """``netsecurity``, asked of the host once and cached on the session; older hosts are refused."""
    if sess.dialect is None:
        lines = sess.run_checked(DETECT_SCRIPT, what="detect firewall cmdlets").split()
        mode, out = (lines + ["", ""])[:2] if len(lines) >= 2 else ("", lines[0] if lines else "")
        if mode and mode != "FullLanguage":
            raise Rejected(f"PowerShell on {sess.target.name} runs in {mode} mode (an AppLocker or WDAC script "
                           "policy): the connector's scripts need FullLanguage for their .NET calls. Exempt the "
                           "agent's account/scripts from the policy, or contain this host through the EDR",
                           detail={"language_mode": mode})
        if out == "netsh":
            raise Rejected(f"{sess.target.name} has no NetSecurity module (New-NetFirewallRule): the connector "
                           "needs Windows 8 / Server 2012 or later (PowerShell 3+, NetSecurity and ScheduledTasks "
                           "modules); Windows 7 / Server 2008 R2 ship PowerShell 2.0 and are not supported",
                           detail={"field": "os", "requirement": "NetSecurity"})
        if out != "netsecurity":
            raise Rejected(f"cannot tell which firewall tooling the host has (answer {out[:80]!r})")
        sess.dialect = out
    return sess.dialect


def read_state(sess: WinRMSession, dialect: str) -> dict[str, Any]:
    """Firewall state in canonical shape + ``deadman_task``, ``reverted_by_deadman``, ``reverted_at``, ``saved``."""
    q_marker = ps_quote(MARKER_FILE)
    q_state = ps_quote(STATE_FILE)
    lines = _prelude(dialect) + ["$r = [ordered]@{}"] + fw_netsecurity.READ_LINES + STATE_DIR_CHECK + [
        f"$r.deadman_task = [bool](Get-ScheduledTask -TaskName {ps_quote(TASK_NAME)} -ErrorAction SilentlyContinue)",
        "$r.state_dir_exists = $a -ne $null",
        "$r.state_dir_trusted = $trusted",
        f"$r.reverted_by_deadman = $trusted -and [IO.File]::Exists({q_marker})",
        f"if ($r.reverted_by_deadman) {{ $r.reverted_at = [IO.File]::ReadAllText({q_marker}).Trim() }}",
        f"if ($trusted -and [IO.File]::Exists({q_state})) {{ $r.saved = [IO.File]::ReadAllText({q_state}) }}",
        *HOST_FACT_LINES,
        "$r | ConvertTo-Json -Depth 6 -Compress",
    ]
    raw = sess.run_json("\n".join(lines), what="read firewall state")
    if not isinstance(raw, dict):
        raise Rejected("read firewall state: host answered with a JSON value that is not an object")
    state: dict[str, Any] = fw_netsecurity.parse(raw)
    state["dialect"] = dialect
    state["deadman_task"] = bool(raw.get("deadman_task"))
    state["reverted_by_deadman"] = bool(raw.get("reverted_by_deadman"))
    state["reverted_at"] = raw.get("reverted_at")
    state["dns_servers"] = host_addresses(raw.get("dns_servers"))
    state["dhcp_servers"] = host_addresses(raw.get("dhcp_servers"))
    state["computer_name"] = str(raw.get("computer_name") or "")
    state["state_dir_untrusted"] = bool(raw.get("state_dir_exists")) and not raw.get("state_dir_trusted")
    saved = raw.get("saved")
    try:
        state["saved"] = json.loads(saved) if isinstance(saved, str) and saved.strip() else None
    except json.JSONDecodeError:
        state["saved"] = None
    return state


def apply_script(dialect: str, plan: IsolationPlan, existing_names: Sequence[str],
                 saved: Mapping[str, Any] | None) -> str:
    """Save the pre-isolation state on the host (if given), clear the marker, write the group, block profiles."""
    lines = _prelude(dialect) + STATE_DIR_ENSURE
    if saved is not None:
        lines.append(_write_file_line(STATE_FILE, json.dumps(saved, sort_keys=True)))
    lines.append(f"Remove-Item -LiteralPath {ps_quote(MARKER_FILE)} -Force -ErrorAction SilentlyContinue")
    lines += fw_netsecurity.apply_lines(plan, existing_names)
    return "\n".join(lines)


def _undo_lines(dialect: str, current_names: Sequence[str], saved: Mapping[str, Any], strict: bool) -> list[str]:
    mod = fw_netsecurity
    names = list(current_names)
    lines: list[str] = (mod.remove_group_lines(names, strict=strict)
            + mod.create_rule_lines(saved.get("rules", []), strict=strict)
            + mod.restore_profiles_lines(saved.get("profiles", []), strict=strict))
    return lines


def undo_script(dialect: str, current_names: Sequence[str], saved: Mapping[str, Any]) -> str:
    """Remove the group, recreate the group's pre-existing rules, restore profiles, forget the saved state."""
    lines = _prelude(dialect) + _undo_lines(dialect, current_names, saved, True) + [
        f"Remove-Item -LiteralPath {ps_quote(STATE_FILE)} -Force -ErrorAction SilentlyContinue"]
    return "\n".join(lines)


def revert_script(dialect: str, plan: IsolationPlan, saved: Mapping[str, Any]) -> str:
    """What the dead-man task runs: the undo, carrying on past failures, then the marker and self-removal."""
    names = plan.rule_names + [str(r.get("Name")) for r in saved.get("rules", [])]
    lines = ["$ErrorActionPreference = 'Continue'", "$ProgressPreference = 'SilentlyContinue'"]
    lines += _undo_lines(dialect, names, saved, False)
    lines += [
        f"[IO.File]::WriteAllText({ps_quote(MARKER_FILE)}, (Get-Date).ToUniversalTime().ToString('o'))",
        f"Remove-Item -LiteralPath {ps_quote(STATE_FILE)} -Force -ErrorAction SilentlyContinue",
        f"Unregister-ScheduledTask -TaskName {ps_quote(TASK_NAME)} -Confirm:$false -ErrorAction SilentlyContinue",
    ]
    return "\n".join(lines)


def task_arguments(revert: str) -> str:
    """The task action's arguments: the revert script as ``-EncodedCommand`` (refused when too long to start)."""
    args = "-NoProfile -NonInteractive -EncodedCommand " + encode_command(revert)
    if len(args) > TASK_ARGUMENTS_LIMIT:
        raise Rejected(f"the dead-man revert script is {len(args)} characters as a task command line, over "
                       f"Windows' limit of {TASK_ARGUMENTS_LIMIT}: too many pre-existing rules in group {GROUP} "
                       "to restore; remove them or isolate without the dead-man switch by hand",
                       detail={"length": len(args), "limit": TASK_ARGUMENTS_LIMIT})
    return args


def register_deadman_script(revert: str, minutes: int) -> str:
    """Register the task (revert inline, trigger in ``minutes``); prints the local trigger time."""
    xml = _TASK_XML.replace("@ARGS@", task_arguments(revert))
    lines = PRELUDE + [
        f"$when = (Get-Date).AddMinutes({int(minutes)}).ToString('s')",
        f"$xml = {_b64_text(xml)}.Replace('@WHEN@', $when)",
        f"Register-ScheduledTask -TaskName {ps_quote(TASK_NAME)} -Xml $xml -Force | Out-Null",
        "$when",
    ]
    return "\n".join(lines)


def delete_deadman_script() -> str:
    """Cancel the dead-man switch (the agent has verified it still reaches the host)."""
    return "\n".join(PRELUDE + [
        f"Unregister-ScheduledTask -TaskName {ps_quote(TASK_NAME)} -Confirm:$false",
    ])
