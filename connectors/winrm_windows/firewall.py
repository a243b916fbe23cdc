"""Scripts that read, isolate and restore Windows Firewall, over either dialect, plus the dead-man switch.

The dialect is detected once per session (``Get-Command New-NetFirewallRule``). State comes back as one JSON
document with the firewall (canonical shape, see :mod:`plan`), the dead-man task's presence, the revert marker
and the saved pre-isolation state (``state.json``, so ``release`` works without the agent's journal).

Dead-man switch: ``revert.ps1`` (undo statements + marker file + delete the task) is written to
``C:\\ProgramData\\IR-Containment`` and scheduled with ``schtasks /Create /XML`` — available on every Windows
version that might lack NetSecurity, and the XML's ISO ``StartBoundary`` avoids schtasks' locale-dependent
``/SD`` date format. ``StartWhenAvailable`` makes a host that was asleep at the deadline revert on wake.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import Rejected
from connectors.winrm_windows import fw_netsecurity, fw_netsh
from connectors.winrm_windows.plan import (
    GROUP,
    MARKER_FILE,
    REVERT_FILE,
    STATE_DIR,
    STATE_FILE,
    TASK_NAME,
    TASK_XML_FILE,
    IsolationPlan,
)
from connectors.winrm_windows.powershell import ps_quote
from connectors.winrm_windows.transport import WinRMSession

__all__ = [
    "DETECT_SCRIPT",
    "GROUP",
    "PRELUDE",
    "TASK_NAME",
    "apply_script",
    "delete_deadman_script",
    "detect_dialect",
    "read_state",
    "register_deadman_script",
    "revert_script",
    "undo_script",
]

PRELUDE = ["$ErrorActionPreference = 'Stop'", "$ProgressPreference = 'SilentlyContinue'"]
DETECT_SCRIPT = ("if (Get-Command New-NetFirewallRule -ErrorAction SilentlyContinue) "
                 "{ 'netsecurity' } else { 'netsh' }")
_DIALECTS: dict[str, Any] = {"netsecurity": fw_netsecurity, "netsh": fw_netsh}
_TASK_XML = """<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo><Description>IR containment dead-man switch: reverts isolation unless the agent confirms it still reaches this host.</Description></RegistrationInfo>
  <Triggers><TimeTrigger><StartBoundary>@WHEN@</StartBoundary><Enabled>true</Enabled></TimeTrigger></Triggers>
  <Principals><Principal id="Author"><UserId>S-1-5-18</UserId><RunLevel>HighestAvailable</RunLevel></Principal></Principals>
  <Settings><MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy><DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries><StopIfGoingOnBatteries>false</StopIfGoingOnBatteries><StartWhenAvailable>true</StartWhenAvailable><ExecutionTimeLimit>PT10M</ExecutionTimeLimit><Enabled>true</Enabled></Settings>
  <Actions Context="Author"><Exec><Command>powershell.exe</Command><Arguments>-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "@FILE@"</Arguments></Exec></Actions>
</Task>
"""


def _prelude(dialect: str) -> list[str]:
    return PRELUDE + ([fw_netsh.PRELUDE] if dialect == "netsh" else [])


def _write_file_line(path: str, text: str, *, encoding: str = "", replace_when: bool = False) -> str:
    """``encoding``: ``Unicode`` (task XML must be UTF-16), ``UTF8`` (with BOM, so PowerShell 5.1 ``-File``
    does not read a non-ASCII script as ANSI) or empty for BOM-less UTF-8 data files."""
    b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
    value = f"[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{b64}'))"
    if replace_when:
        value += ".Replace('@WHEN@', $when)"
    enc = f", [Text.Encoding]::{encoding}" if encoding else ""
    return f"[IO.File]::WriteAllText({ps_quote(path)}, {value}{enc})"


def detect_dialect(sess: WinRMSession) -> str:
    """``netsecurity`` or ``netsh``, asked of the host once and cached on the session."""
    if sess.dialect is None:
        out = sess.run_checked(DETECT_SCRIPT, what="detect firewall cmdlets").strip()
        if out not in _DIALECTS:
            raise Rejected(f"cannot tell which firewall tooling the host has (answer {out[:80]!r})")
        sess.dialect = out
    return sess.dialect


def read_state(sess: WinRMSession, dialect: str) -> dict[str, Any]:
    """Firewall state in canonical shape + ``deadman_task``, ``reverted_by_deadman``, ``reverted_at``, ``saved``."""
    q_marker = ps_quote(MARKER_FILE)
    q_state = ps_quote(STATE_FILE)
    lines = _prelude(dialect) + ["$r = [ordered]@{}"] + _DIALECTS[dialect].READ_LINES + [
        f"& schtasks.exe /Query /TN {ps_quote(TASK_NAME)} 2>&1 | Out-Null; $r.deadman_task = ($LASTEXITCODE -eq 0)",
        f"$r.reverted_by_deadman = [IO.File]::Exists({q_marker})",
        f"if ($r.reverted_by_deadman) {{ $r.reverted_at = [IO.File]::ReadAllText({q_marker}).Trim() }}",
        f"if ([IO.File]::Exists({q_state})) {{ $r.saved = [IO.File]::ReadAllText({q_state}) }}",
        "$r | ConvertTo-Json -Depth 6 -Compress",
    ]
    raw = sess.run_json("\n".join(lines), what="read firewall state")
    if not isinstance(raw, dict):
        raise Rejected("read firewall state: host answered with a JSON value that is not an object")
    state: dict[str, Any] = _DIALECTS[dialect].parse(raw)
    state["dialect"] = dialect
    state["deadman_task"] = bool(raw.get("deadman_task"))
    state["reverted_by_deadman"] = bool(raw.get("reverted_by_deadman"))
    state["reverted_at"] = raw.get("reverted_at")
    saved = raw.get("saved")
    try:
        state["saved"] = json.loads(saved) if isinstance(saved, str) and saved.strip() else None
    except json.JSONDecodeError:
        state["saved"] = None
    return state


def apply_script(dialect: str, plan: IsolationPlan, existing_names: Sequence[str],
                 saved: Mapping[str, Any] | None) -> str:
    """Save the pre-isolation state on the host (if given), clear the marker, write the group, block profiles."""
    lines = _prelude(dialect) + [f"New-Item -ItemType Directory -Force -Path {ps_quote(STATE_DIR)} | Out-Null"]
    if saved is not None:
        lines.append(_write_file_line(STATE_FILE, json.dumps(saved, sort_keys=True)))
    lines.append(f"Remove-Item -LiteralPath {ps_quote(MARKER_FILE)} -Force -ErrorAction SilentlyContinue")
    lines += _DIALECTS[dialect].apply_lines(plan, existing_names)
    return "\n".join(lines)


def _undo_lines(dialect: str, current_names: Sequence[str], saved: Mapping[str, Any], strict: bool) -> list[str]:
    mod = _DIALECTS[dialect]
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
        f"& schtasks.exe /Delete /TN {ps_quote(TASK_NAME)} /F | Out-Null",
    ]
    return "\n".join(lines)


def register_deadman_script(revert: str, minutes: int) -> str:
    """Write ``revert.ps1`` and the task XML, register the task; prints the local trigger time."""
    xml = _TASK_XML.replace("@FILE@", REVERT_FILE)
    lines = PRELUDE + [
        f"New-Item -ItemType Directory -Force -Path {ps_quote(STATE_DIR)} | Out-Null",
        _write_file_line(REVERT_FILE, revert, encoding="UTF8"),
        f"$when = (Get-Date).AddMinutes({int(minutes)}).ToString('s')",
        _write_file_line(TASK_XML_FILE, xml, encoding="Unicode", replace_when=True),
        f"$o = (& schtasks.exe /Create /TN {ps_quote(TASK_NAME)} /XML {ps_quote(TASK_XML_FILE)} /F 2>&1 | Out-String)",
        "if ($LASTEXITCODE -ne 0) { throw ('schtasks /Create failed: ' + $o.Trim()) }",
        "$when",
    ]
    return "\n".join(lines)


def delete_deadman_script() -> str:
    """Cancel the dead-man switch (the agent has verified it still reaches the host)."""
    return "\n".join(PRELUDE + [
        f"$o = (& schtasks.exe /Delete /TN {ps_quote(TASK_NAME)} /F 2>&1 | Out-String)",
        "if ($LASTEXITCODE -ne 0) { throw ('schtasks /Delete failed: ' + $o.Trim()) }",
        f"Remove-Item -LiteralPath {ps_quote(REVERT_FILE)} -Force -ErrorAction SilentlyContinue",
        f"Remove-Item -LiteralPath {ps_quote(TASK_XML_FILE)} -Force -ErrorAction SilentlyContinue",
    ])
