"""``kill_sessions``: purge a user's Kerberos tickets and log off their interactive sessions.

Disabling an AD account does not revoke tickets already issued (valid for hours), so containment of a user pairs
the account disable with this. The host is asked for ``quser`` and ``klist sessions`` output, parsed here, and only
numbers parsed from that output (session IDs, logon IDs) go back into the second script — never the user name.
Tickets are purged first: logging off ends interactive logons, but network logons keep their tickets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connectors.types import ActionResult, Verification
from connectors.winrm_windows.powershell import validate_user_name
from connectors.winrm_windows.transport import WinRMSession

__all__ = [
    "kill_sessions",
    "parse_klist_sessions",
    "parse_quser",
    "read_sessions",
    "ticket_counts",
    "verify_sessions_gone",
]

# 'Continue', not 'Stop': quser writes "No User exists" to stderr when nobody is logged on, which Windows
# PowerShell 5.1 turns into a terminating NativeCommandError under 'Stop' (PowerShell issue #3996).
_READ = "\n".join([
    "$ErrorActionPreference = 'Continue'",
    "$r = [ordered]@{}",
    "$r.quser = (& quser.exe 2>&1 | Out-String)",
    "$r.klist = (& klist.exe sessions 2>&1 | Out-String)",
    "$r | ConvertTo-Json -Compress",
])
_KLIST_LINE = re.compile(r"^\[\d+\]\s+Session\s+(\d+)\s+(\d+):(0x[0-9a-fA-F]+)\s+(\S+)\s+(\S+)")
_TICKETS = re.compile(r"Cached Tickets:\s*\((\d+)\)")
_QUSER_STATES = {"Active", "Disc", "Conn", "Listen", "Down", "Idle", "Shadow", "Reset", "Init"}


@dataclass(frozen=True)
class QuserSession:
    """One row of ``quser``: the session ID is what ``logoff`` takes."""

    user: str
    session_name: str
    session_id: int
    state: str


def parse_quser(text: str) -> list[QuserSession]:
    """Rows of ``quser`` output (user names are padded to column 23; a disconnected row has no session name)."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip(" >").startswith("USERNAME") or len(line) < 24:
            continue
        user = line[1:23].strip()
        rest = line[23:].split()
        if not rest:
            continue
        if rest[0].isdigit():
            name, sid, state = "", rest[0], rest[1] if len(rest) > 1 else ""
        elif len(rest) > 2 and rest[1].isdigit():
            name, sid, state = rest[0], rest[1], rest[2]
        else:
            continue
        if state in _QUSER_STATES:
            rows.append(QuserSession(user, name, int(sid), state))
    return rows


def parse_klist_sessions(text: str) -> list[dict[str, Any]]:
    """Logon sessions from ``klist sessions``: ``{"luid": "0x3e7", "domain": ..., "user": ..., "kind": ...}``."""
    out = []
    for line in text.splitlines():
        m = _KLIST_LINE.match(line.strip())
        if m is None:
            continue
        account = m.group(4)
        domain, _, user = account.rpartition("\\")
        out.append({"luid": m.group(3).lower(), "domain": domain, "user": user, "kind": m.group(5)})
    return out


def _matches(domain: str | None, user: str, row_domain: str, row_user: str) -> bool:
    a, b = row_user.lower(), user.lower()
    if a != b and not (len(a) == 20 and b.startswith(a)):  # quser cuts names at 20 characters
        return False
    return domain is None or not row_domain or row_domain.lower() == domain.lower()


def ticket_counts(sess: WinRMSession, luids: list[str]) -> dict[str, int]:
    """Cached Kerberos tickets per logon session (``klist -li``); -1 when klist's answer is not understood."""
    if not luids:
        return {}
    lines = ["$ErrorActionPreference = 'Continue'", "$r = [ordered]@{}"]
    lines += [f"$r.'0x{int(x, 16):x}' = (& klist.exe -li 0x{int(x, 16):x} 2>&1 | Out-String)" for x in luids]
    lines.append("$r | ConvertTo-Json -Compress")
    raw = sess.run_json("\n".join(lines), what="count tickets")
    out = {}
    for key, text in raw.items():
        m = _TICKETS.search(str(text))
        out[key] = int(m.group(1)) if m else -1
    return out


def read_sessions(sess: WinRMSession, account: str) -> tuple[list[QuserSession], list[dict[str, Any]]]:
    """The user's interactive sessions and logon sessions (quser truncates names to 20 characters)."""
    domain, user = validate_user_name(account)
    raw = sess.run_json(_READ, what="list sessions")
    rows = [r for r in parse_quser(str(raw.get("quser") or "")) if _matches(None, user, "", r.user)]
    logons = [s for s in parse_klist_sessions(str(raw.get("klist") or ""))
              if _matches(domain, user, s["domain"], s["user"])]
    return rows, logons


def kill_sessions(sess: WinRMSession, account: str) -> ActionResult:
    """Purge tickets of every logon session of ``account``, then log off its interactive sessions."""
    rows, logons = read_sessions(sess, account)
    counts = ticket_counts(sess, [s["luid"] for s in logons])
    logons = [s for s in logons if counts.get(s["luid"], -1) != 0]
    if not rows and not logons:
        return ActionResult(False, f"{account} has no sessions or tickets on {sess.target.name}",
                            {"user": account, "logged_off": [], "purged_logon_ids": []})
    lines = ["$ErrorActionPreference = 'Stop'"]
    for s in logons:
        luid = int(s["luid"], 16)
        lines.append(f"& klist.exe purge -li 0x{luid:x} | Out-Null")
        lines.append(f"if ($LASTEXITCODE -ne 0) {{ throw ('klist purge failed for logon 0x{luid:x}') }}")
    for r in rows:
        lines.append(f"& logoff.exe {int(r.session_id)}")
        lines.append(f"if ($LASTEXITCODE -ne 0) {{ throw ('logoff failed for session {int(r.session_id)}') }}")
    sess.run_checked("\n".join(lines), what="end sessions")
    return ActionResult(True, f"ended {len(rows)} session(s) of {account} and purged tickets of "
                              f"{len(logons)} logon session(s) on {sess.target.name}",
                        {"user": account,
                         "logged_off": [{"session_id": r.session_id, "session_name": r.session_name,
                                         "state": r.state} for r in rows],
                         "purged_logon_ids": [s["luid"] for s in logons]},
                        ["processes started outside a logon session (services, scheduled tasks) are not ended"])


def verify_sessions_gone(sess: WinRMSession, account: str) -> Verification:
    """In effect when the user has no interactive session and no logon session with tickets left."""
    rows, logons = read_sessions(sess, account)
    counts = ticket_counts(sess, [s["luid"] for s in logons])
    with_tickets = sorted(k for k, n in counts.items() if n != 0)
    observed = {"sessions": [r.session_id for r in rows], "logon_ids": [s["luid"] for s in logons],
                "tickets": counts}
    if rows or with_tickets:
        return Verification(False, f"{account} still has {len(rows)} session(s) and tickets in logon(s) "
                                   f"{with_tickets}", observed)
    return Verification(True, f"{account} has no sessions left on {sess.target.name}", observed)
