"""``kill_sessions``: end everything a user has running on a host — interactive sessions, SMB sessions, WinRM
shells, the processes of their network logons — then purge their tickets where Windows allows it.

Disabling an AD account does not revoke what is already running or the tickets already issued, so containment of a
user pairs the disable with this. Everything is read as CIM/.NET objects, never as tool text: ``quser``,
``klist`` and ``netsh`` print localised words ("Aktiv", "Getr.") that an English parser silently misses, which
would make the kill find nothing and the verify pass.

* who: ``Win32_LoggedOnUser`` (account → logon id) and ``Win32_LogonSession`` (logon type);
* what: ``Win32_SessionProcess`` (logon id → process) and ``Win32_Process`` (terminal-services session id);
* network logons: ``Get-SmbSession`` / ``Close-SmbSession`` and WinRM shells (``Get-WSManInstance -ResourceURI
  shell -Enumerate`` / ``Remove-WSManInstance``) — logging off interactive sessions leaves them running.

Only numbers and GUIDs parsed from the host's answer go into the second script, never the user name. Order: log off
the interactive sessions, close SMB sessions and shells, terminate what is left, then ``klist purge -li`` as a
best effort: purging *another* logon session's tickets needs SeTcbPrivilege (KERB_PURGE_TKT_CACHE_REQUEST), which
an administrator's WinRM token does not hold; the tickets end with the logon session itself once nothing
references it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import InvalidInput, Rejected
from connectors.types import ActionResult, Verification
from connectors.winrm_windows.powershell import validate_user_name
from connectors.winrm_windows.session import WinRMSession

__all__ = ["UserFootprint", "footprint", "kill_sessions", "read_sessions", "refuse_own_account",
           "verify_sessions_gone"]

READ_SCRIPT = "\n".join([
    "$ErrorActionPreference = 'Stop'",
    "$ProgressPreference = 'SilentlyContinue'",
    "$r = [ordered]@{}",
    ("$r.logons = @(Get-CimInstance -ClassName Win32_LoggedOnUser | ForEach-Object { [ordered]@{ "
     "Domain = [string]$_.Antecedent.Domain; Name = [string]$_.Antecedent.Name; "
     "LogonId = [string]$_.Dependent.LogonId } })"),
    ("$r.logon_types = @(Get-CimInstance -ClassName Win32_LogonSession | ForEach-Object { [ordered]@{ "
     "LogonId = [string]$_.LogonId; LogonType = [int]$_.LogonType } })"),
    ("$r.session_processes = @(Get-CimInstance -ClassName Win32_SessionProcess | ForEach-Object { [ordered]@{ "
     "LogonId = [string]$_.Antecedent.LogonId; ProcessId = [string]$_.Dependent.Handle } })"),
    ("$r.processes = @(Get-CimInstance -ClassName Win32_Process | ForEach-Object { [ordered]@{ "
     "ProcessId = [int]$_.ProcessId; SessionId = [int]$_.SessionId; Name = [string]$_.Name } })"),
    ("$r.smb = @(Get-SmbSession | ForEach-Object { [ordered]@{ SessionId = [string]$_.SessionId; "
     "ClientUserName = [string]$_.ClientUserName } })"),
    ("$r.shells = @(Get-WSManInstance -ResourceURI shell -Enumerate | ForEach-Object { [ordered]@{ "
     "ShellId = [string]$_.ShellId; Owner = [string]$_.Owner; ProcessId = [int]$_.ProcessId } })"),
    "$r | ConvertTo-Json -Depth 4 -Compress",
])
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_INTERACTIVE = {2, 10, 11}  # Interactive, RemoteInteractive (RDP), CachedInteractive


@dataclass
class UserFootprint:
    """What one user has on the host, as ids the kill script can name."""

    logon_ids: list[int] = field(default_factory=list)
    ts_sessions: list[int] = field(default_factory=list)
    smb_sessions: list[int] = field(default_factory=list)
    shells: list[str] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.ts_sessions or self.smb_sessions or self.shells or self.processes)

    def observed(self) -> dict[str, Any]:
        return {"logon_ids": [f"0x{x:x}" for x in self.logon_ids], "sessions": self.ts_sessions,
                "smb_sessions": self.smb_sessions, "shells": self.shells,
                "processes": [{"pid": p["pid"], "name": p["name"]} for p in self.processes]}


def _items(raw: Any, key: str) -> list[dict[str, Any]]:
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, dict):
        value = [value]
    return [v for v in value or [] if isinstance(v, dict)]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip(), 0) if str(value).strip().lower().startswith("0x") else int(str(value))
    except (TypeError, ValueError):
        return None


def _same(domain: str | None, user: str, row_domain: str, row_user: str) -> bool:
    if row_user.lower() != user.lower():
        return False
    return domain is None or not row_domain or row_domain.lower() == domain.lower()


def _split(account: str) -> tuple[str, str]:
    dom, sep, user = account.rpartition("\\")
    return (dom, user) if sep else ("", account)


def footprint(raw: Any, account: str) -> UserFootprint:
    """Pick the user's objects out of the host's answer (account compared case-insensitively, domain if given)."""
    domain, user = validate_user_name(account)
    fp = UserFootprint()
    fp.logon_ids = sorted({lid for row in _items(raw, "logons")
                           if _same(domain, user, str(row.get("Domain", "")), str(row.get("Name", "")))
                           and (lid := _int(row.get("LogonId"))) is not None and lid != 0x3E7})
    types = {_int(t.get("LogonId")): _int(t.get("LogonType")) for t in _items(raw, "logon_types")}
    mine = set(fp.logon_ids)
    pids = {_int(sp.get("ProcessId")) for sp in _items(raw, "session_processes") if _int(sp.get("LogonId")) in mine}
    procs = [p for p in _items(raw, "processes") if _int(p.get("ProcessId")) in pids]
    fp.processes = [{"pid": _int(p.get("ProcessId")), "session": _int(p.get("SessionId")),
                     "name": str(p.get("Name", ""))} for p in procs if (_int(p.get("ProcessId")) or 0) > 4]
    by_session: dict[int, set[int | None]] = {}
    for sp in _items(raw, "session_processes"):
        lid = _int(sp.get("LogonId"))
        if lid in mine:
            pid = _int(sp.get("ProcessId"))
            for p in fp.processes:
                if p["pid"] == pid and (p["session"] or 0) > 0:
                    by_session.setdefault(p["session"], set()).add(types.get(lid))
    fp.ts_sessions = sorted(sid for sid, kinds in by_session.items() if kinds & _INTERACTIVE)
    for s in _items(raw, "smb"):
        d, u = _split(str(s.get("ClientUserName", "")))
        sid = _int(s.get("SessionId"))
        if sid is not None and _same(domain, user, d, u):
            fp.smb_sessions.append(sid)
    for sh in _items(raw, "shells"):
        d, u = _split(str(sh.get("Owner", "")))
        shell_id = str(sh.get("ShellId", ""))
        if _GUID.match(shell_id) and _same(domain, user, d, u):
            fp.shells.append(shell_id.upper())
    return fp


def refuse_own_account(sess: WinRMSession, account: str) -> None:
    """Never end the agent's own logons: that would cut the containment in progress."""
    _, user = validate_user_name(account)
    _, own = validate_user_name(sess.username.split("@", 1)[0])
    if user.lower() == own.lower():
        raise InvalidInput(f"{account} is the account the agent logs on with to {sess.target.name}; ending its "
                           "sessions would cut this connection", detail={"field": "user", "value": account})


def read_sessions(sess: WinRMSession, account: str) -> UserFootprint:
    raw = sess.run_json(READ_SCRIPT, what="list sessions")
    if not isinstance(raw, dict):
        raise Rejected("list sessions: host answer is not a JSON object")
    return footprint(raw, account)


def kill_script(fp: UserFootprint) -> str:
    """End everything in ``fp``; every step records its own outcome (one failure does not stop the others)."""
    lines = ["$ErrorActionPreference = 'Continue'", "$ProgressPreference = 'SilentlyContinue'", "$r = [ordered]@{}"]
    for sid in fp.ts_sessions:
        lines.append(f"& logoff.exe {int(sid)}; $r.'logoff_{int(sid)}' = $LASTEXITCODE")
    for smb in fp.smb_sessions:
        lines.append(f"Close-SmbSession -SessionId {int(smb)} -Force -ErrorAction SilentlyContinue; "
                     f"$r.'smb_{int(smb)}' = $?")
    for shell in fp.shells:
        if not _GUID.match(shell):
            raise Rejected(f"shell id {shell!r} from the host is not a GUID")
        lines.append(f"Remove-WSManInstance -ResourceURI shell -SelectorSet @{{ ShellId = '{shell}' }} "
                     f"-ErrorAction SilentlyContinue; $r.'shell_{shell}' = $?")
    for p in fp.processes:
        lines.append(f"Stop-Process -Id {int(p['pid'])} -Force -ErrorAction SilentlyContinue; "
                     f"$r.'pid_{int(p['pid'])}' = $?")
    for lid in fp.logon_ids:
        lines.append(f"& klist.exe purge -li 0x{int(lid):x} | Out-Null; $r.'purge_0x{int(lid):x}' = $LASTEXITCODE")
    lines.append("$r | ConvertTo-Json -Compress")
    return "\n".join(lines)


def kill_sessions(sess: WinRMSession, account: str) -> ActionResult:
    """Log off, close, remove, terminate; then purge tickets best-effort. Verify reads everything again."""
    refuse_own_account(sess, account)
    fp = read_sessions(sess, account)
    if fp.empty:
        return ActionResult(False, f"{account} has nothing running on {sess.target.name}",
                            {"user": account, **fp.observed()})
    outcome = sess.run_json(kill_script(fp), what="end sessions")
    outcome = outcome if isinstance(outcome, dict) else {}
    failed_purges = [k.split("_", 1)[1] for k, v in outcome.items() if k.startswith("purge_") and v != 0]
    warnings = [("processes started outside the user's logons (services, scheduled tasks running as other "
                "accounts) are not ended")]
    if failed_purges:
        warnings.append(f"klist purge failed for logon(s) {', '.join(failed_purges)}: purging another logon "
                        "session's tickets needs SeTcbPrivilege; those tickets end with the logon session once "
                        "nothing references it (verify checks that nothing does)")
    failed = sorted(k for k, v in outcome.items() if not k.startswith("purge_") and v not in (0, True))
    if failed:
        warnings.append(f"steps that reported failure: {', '.join(failed)} (verify says what is left)")
    return ActionResult(True, f"ended {len(fp.ts_sessions)} interactive session(s), {len(fp.smb_sessions)} SMB "
                              f"session(s), {len(fp.shells)} WinRM shell(s) and {len(fp.processes)} process(es) of "
                              f"{account} on {sess.target.name}",
                        {"user": account, **fp.observed(), "outcome": outcome}, warnings)


def verify_sessions_gone(sess: WinRMSession, account: str) -> Verification:
    """In effect when the user has no interactive session, SMB session, WinRM shell or process left."""
    fp = read_sessions(sess, account)
    if fp.empty:
        return Verification(True, f"{account} has nothing running on {sess.target.name}", fp.observed())
    return Verification(False, f"{account} still has {len(fp.ts_sessions)} session(s), {len(fp.smb_sessions)} SMB "
                               f"session(s), {len(fp.shells)} shell(s), {len(fp.processes)} process(es) on "
                               f"{sess.target.name}", fp.observed())
