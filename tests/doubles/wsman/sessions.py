"""The double's CIM, SMB and WinRM-shell view of logons, and the statements that end them.

Read statements answer from :class:`~tests.doubles.wsman.host.WindowsHost` state the way the classes are documented
(Win32_LoggedOnUser: Antecedent = Win32_Account {Domain, Name}, Dependent = Win32_LogonSession {LogonId as a
decimal string}; Win32_SessionProcess: Antecedent = logon session, Dependent = Win32_Process {Handle}). Ending
statements change that state; ``klist purge -li`` of another logon session fails unless the caller is SYSTEM, because
KERB_PURGE_TKT_CACHE_REQUEST with a non-zero LogonId requires SeTcbPrivilege (MS docs,
"KERB_PURGE_TKT_CACHE_REQUEST structure"), which an administrator's WinRM token does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.doubles.wsman.interpreter import Interpreter, _Run

__all__ = ["statements"]

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


def _logons(it: Interpreter) -> list[dict[str, Any]]:
    return [{"Domain": s.domain, "Name": s.user, "LogonId": str(s.luid)} for s in it.host.logons.values()]


def _logon_types(it: Interpreter) -> list[dict[str, Any]]:
    return [{"LogonId": str(s.luid), "LogonType": 5 if s.luid == 0x3E7 else s.logon_type}
            for s in it.host.logons.values()]


def _session_processes(it: Interpreter) -> list[dict[str, Any]]:
    rows = [{"LogonId": str(0x3E7), "ProcessId": str(pid)} for pid, _, _, _ in it.host.processes]
    rows += [{"LogonId": str(p.luid), "ProcessId": str(p.pid)} for p in it.host.user_processes]
    return rows


def _processes(it: Interpreter) -> list[dict[str, Any]]:
    rows = [{"ProcessId": pid, "SessionId": sess, "Name": name} for pid, name, sess, _ in it.host.processes]
    rows += [{"ProcessId": p.pid, "SessionId": p.session_id, "Name": p.name} for p in it.host.user_processes]
    return rows


def _smb(it: Interpreter) -> list[dict[str, Any]]:
    return [{"SessionId": str(s.session_id), "ClientUserName": s.client_user} for s in it.host.smb_sessions]


def _shells(it: Interpreter) -> list[dict[str, Any]]:
    return [{"ShellId": sid, "Owner": owner, "ProcessId": pid} for sid, (owner, pid) in it.host.wsman_shells.items()]


def _reader(key: str, rows: Callable[[Interpreter], list[dict[str, Any]]]) -> Callable[..., None]:
    def handler(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
        assert run.r is not None
        run.r[key] = rows(it)
    return handler


def _logoff(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    run.last_exit = 0 if it.host.logoff(int(m.group(1))) else 1
    run.r[f"logoff_{m.group(2)}"] = run.last_exit


def _close_smb(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    sid = int(m.group(1))
    match = [s for s in it.host.smb_sessions if s.session_id == sid]
    it.host.smb_sessions = [s for s in it.host.smb_sessions if s.session_id != sid]
    for s in match:
        it.host.end_logon_if_unused(s.luid)
    run.r[f"smb_{m.group(2)}"] = bool(match)


def _remove_shell(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    shell = it.host.wsman_shells.pop(m.group(1).upper(), None)
    if shell is not None:  # the shell's host process (wsmprovhost) goes with it
        it.host.user_processes = [p for p in it.host.user_processes if p.pid != shell[1]]
    run.r[f"shell_{m.group(2)}"] = shell is not None


def _stop_process(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    pid = int(m.group(1))
    match = [p for p in it.host.user_processes if p.pid == pid]
    it.host.user_processes = [p for p in it.host.user_processes if p.pid != pid]
    for p in match:
        it.host.end_logon_if_unused(p.luid)
    run.r[f"pid_{m.group(2)}"] = bool(match)


def _purge(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    luid = int(m.group(1), 16)
    session = it.host.logons.get(luid)
    if session is None or it.user != "SYSTEM":
        # LsaCallAuthenticationPackage answers STATUS_ACCESS_DENIED without SeTcbPrivilege (or the session is
        # gone); klist prints the failure and exits 1.
        run.last_exit = 1
    else:
        session.tickets = 0
        run.last_exit = 0
    run.r[f"purge_0x{m.group(2)}"] = run.last_exit


def statements() -> list[tuple[str, Callable[..., None]]]:
    """(pattern, handler(interpreter, run, match)) for every statement of this kind the connector sends."""
    return [
        (re.escape("$r.logons = @(Get-CimInstance -ClassName Win32_LoggedOnUser | ForEach-Object { [ordered]@{ "
                   "Domain = [string]$_.Antecedent.Domain; Name = [string]$_.Antecedent.Name; "
                   "LogonId = [string]$_.Dependent.LogonId } })"), _reader("logons", _logons)),
        (re.escape("$r.logon_types = @(Get-CimInstance -ClassName Win32_LogonSession | ForEach-Object { [ordered]@{ "
                   "LogonId = [string]$_.LogonId; LogonType = [int]$_.LogonType } })"),
         _reader("logon_types", _logon_types)),
        (re.escape("$r.session_processes = @(Get-CimInstance -ClassName Win32_SessionProcess | ForEach-Object { "
                   "[ordered]@{ LogonId = [string]$_.Antecedent.LogonId; ProcessId = [string]$_.Dependent.Handle } "
                   "})"), _reader("session_processes", _session_processes)),
        (re.escape("$r.processes = @(Get-CimInstance -ClassName Win32_Process | ForEach-Object { [ordered]@{ "
                   "ProcessId = [int]$_.ProcessId; SessionId = [int]$_.SessionId; Name = [string]$_.Name } })"),
         _reader("processes", _processes)),
        (re.escape("$r.smb = @(Get-SmbSession | ForEach-Object { [ordered]@{ SessionId = [string]$_.SessionId; "
                   "ClientUserName = [string]$_.ClientUserName } })"), _reader("smb", _smb)),
        (re.escape("$r.shells = @(Get-WSManInstance -ResourceURI shell -Enumerate | ForEach-Object { [ordered]@{ "
                   "ShellId = [string]$_.ShellId; Owner = [string]$_.Owner; ProcessId = [int]$_.ProcessId } })"),
         _reader("shells", _shells)),
        (r"& logoff\.exe (\d+); \$r\.'logoff_(\d+)' = \$LASTEXITCODE", _logoff),
        (r"Close-SmbSession -SessionId (\d+) -Force -ErrorAction SilentlyContinue; \$r\.'smb_(\d+)' = \$\?",
         _close_smb),
        ((rf"Remove-WSManInstance -ResourceURI shell -SelectorSet @\{{ ShellId = '({_GUID})' \}} -ErrorAction "
         rf"SilentlyContinue; \$r\.'shell_({_GUID})' = \$\?"), _remove_shell),
        (r"Stop-Process -Id (\d+) -Force -ErrorAction SilentlyContinue; \$r\.'pid_(\d+)' = \$\?", _stop_process),
        (r"& klist\.exe purge -li 0x([0-9a-f]+) \| Out-Null; \$r\.'purge_0x([0-9a-f]+)' = \$LASTEXITCODE", _purge),
    ]
