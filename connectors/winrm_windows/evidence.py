"""``capture_evidence``: a read-only snapshot of what is running and who logged on, as text files.

Captured before containment changes anything, so the counsel report shows the host as the responder found it.
One script, each item independent (``$ErrorActionPreference = 'Continue'``), so a missing cmdlet costs one file,
not the whole capture. Security events are bounded (``-MaxEvents``) and every file is capped agent-side.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import InvalidInput, Rejected
from connectors.types import ActionResult
from connectors.winrm_windows.session import WinRMSession

__all__ = ["MAX_FILE_CHARS", "capture_evidence", "evidence_script", "validate_max_events"]

MAX_FILE_CHARS = 2_000_000


def validate_max_events(value: Any) -> int:
    """How many 4624/4625 events to read (1..5000, default 200)."""
    if value is None:
        return 200
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5000:
        raise InvalidInput(f"max_events must be an integer 1..5000, got {value!r}",
                           detail={"field": "max_events", "value": value})
    return value


def evidence_script(max_events: int) -> str:
    """The capture script; every item is a fixed statement, the only parameter an integer."""
    return "\n".join([
        "$ErrorActionPreference = 'Continue'",
        "$ProgressPreference = 'SilentlyContinue'",
        "$r = [ordered]@{}",
        ("$r.'processes.txt' = (Get-Process | Sort-Object Id | Format-Table -AutoSize Id, ProcessName, SessionId, "
        "StartTime, Path | Out-String -Width 400)"),
        ("$r.'tcp_connections.txt' = if (Get-Command Get-NetTCPConnection -ErrorAction SilentlyContinue) "
        "{ Get-NetTCPConnection | Sort-Object State, LocalPort | Format-Table -AutoSize LocalAddress, LocalPort, "
        "RemoteAddress, RemotePort, State, OwningProcess | Out-String -Width 400 } "
        "else { (& netstat.exe -ano | Out-String) }"),
        "$r.'sessions.txt' = (& quser.exe 2>&1 | Out-String)",
        ("$r.'security_events.txt' = (Get-WinEvent -FilterHashtable @{ LogName = 'Security'; Id = 4624, 4625 } "
        f"-MaxEvents {int(max_events)} -ErrorAction SilentlyContinue | Format-List TimeCreated, Id, Message "
        "| Out-String -Width 400)"),
        ("$r.'firewall.txt' = (& netsh.exe 'advfirewall' 'show' 'allprofiles' | Out-String) + "
        "(& netsh.exe 'advfirewall' 'firewall' 'show' 'rule' 'name=all' | Out-String)"),
        "$r | ConvertTo-Json -Compress",
    ])


def capture_evidence(sess: WinRMSession, max_events: int) -> ActionResult:
    """Run the capture and return ``details["evidence"] = {filename: text}`` for the engine to hash and store."""
    raw = sess.run_json(evidence_script(max_events), what="capture evidence")
    if not isinstance(raw, dict):
        raise Rejected("capture evidence: host answer is not a JSON object")
    evidence: dict[str, str] = {}
    truncated = []
    for name, text in raw.items():
        body = "" if text is None else str(text)
        if len(body) > MAX_FILE_CHARS:
            body = body[:MAX_FILE_CHARS]
            truncated.append(name)
        evidence[str(name)] = body
    warnings = [f"{n} truncated to {MAX_FILE_CHARS} characters" for n in truncated]
    return ActionResult(False, f"captured {len(evidence)} evidence files from {sess.target.name}",
                        {"evidence": evidence, "max_events": max_events}, warnings)
