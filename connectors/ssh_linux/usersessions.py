"""End every login session and process of one user on a Linux host (paired with disabling the AD account).

Why: disabling an account does not end what is already running (ARCHITECTURE lesson 8: Kerberos tickets and
open sessions survive). The user is resolved to a numeric UID on the host first (``id -u``, trying the
``DOMAIN\\user``, ``user@domain`` and bare spellings winbind/sssd use), so ``loginctl`` and ``pkill`` act on a
number, never on text. root and the agent's own login user are refused: killing them would cut the agent off.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from connectors.errors import Rejected
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.validation import UserName, parse_user
from connectors.types import ActionResult, Verification

__all__ = ["kill_script", "kill_sessions", "preview", "verify_killed"]

_RESOLVE = ('uid=""; for n in {names}; do if u=$(id -u -- "$n" 2>/dev/null); then uid=$u; name=$n; break; fi; '
            'done; if [ -z "$uid" ]; then echo "@@NOUSER"; exit 0; fi; '
            'case "$uid" in *[!0-9]*) echo "@@NOUSER"; exit 0;; esac; echo "@@UID $uid"; ')


def _resolve(user: UserName) -> str:
    return _RESOLVE.format(names=" ".join(shlex.quote(n) for n in user.candidates()))


def kill_script(user: UserName) -> str:
    """Resolve, refuse root/self, list, terminate via logind when present, SIGKILL the rest, list what is left."""
    return (_resolve(user)
            + 'if [ "$uid" = 0 ]; then echo "@@REFUSED root"; exit 0; fi; '
              'if [ "$uid" = "$(id -u)" ]; then echo "@@REFUSED self"; exit 0; fi; '
              'echo "@@BEFORE"; ps -o pid=,user=,args= -U "$uid" 2>/dev/null; '
              'echo "@@LOGINCTL"; if command -v loginctl >/dev/null 2>&1; then '
              'priv loginctl terminate-user "$uid" 2>&1; echo "rc=$?"; else echo "absent"; fi; '
              'echo "@@PKILL"; priv pkill -KILL -U "$uid"; echo "rc=$?"; priv pkill -KILL -u "$uid"; '
              'i=0; while ps -o stat= -U "$uid" | grep -qv "^Z" && [ $i -lt 25 ]; do sleep 0.04; i=$((i+1)); done; '
              'echo "@@AFTER"; ps -o pid=,stat=,args= -U "$uid" 2>/dev/null; true')


def _alive(lines: list[str]) -> list[str]:
    """Drop zombies (``pid stat args`` lines with state Z): killed, only not yet reaped by their parent."""
    return [ln for ln in lines if len(ln.split()) < 2 or not ln.split()[1].startswith("Z")]


def _section(out: str, name: str) -> list[str]:
    lines, on = [], False
    for line in out.splitlines():
        if line.startswith("@@"):
            on = line[2:].split(" ", 1)[0] == name
            continue
        if on and line.strip():
            lines.append(line.strip())
    return lines


def preview(args: Mapping[str, Any]) -> list[str]:
    user = parse_user(args.get("user"))
    return [f"resolve {user} to a UID (id -u; tried as {', '.join(user.candidates())}); refuse root and self",
            "loginctl terminate-user UID (when logind exists); pkill -KILL -U UID; pkill -KILL -u UID",
            "list the user's processes before and after"]


def kill_sessions(s: SshSession, args: Mapping[str, Any]) -> ActionResult:
    user = parse_user(args.get("user"))
    _, out, _ = s.run(kill_script(user), timeout=20, what="kill user sessions")
    if "@@NOUSER" in out:
        return ActionResult(False, f"user {user} is unknown on this host; nothing to kill",
                            details={"user": str(user)})
    if "@@REFUSED" in out:
        why = "root" if "@@REFUSED root" in out else "the account the agent logs in with"
        raise Rejected(f"refusing to kill the sessions of {user}: it is {why}", target=s.label)
    uid = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("@@UID ")), "")
    before, after = _section(out, "BEFORE"), _alive(_section(out, "AFTER"))
    loginctl = " ".join(_section(out, "LOGINCTL"))
    details = {"user": str(user), "uid": int(uid) if uid.isdigit() else None, "processes_killed": before[:200],
               "killed_count": len(before), "left": after[:50], "loginctl": loginctl[:300]}
    warnings = [f"{len(after)} process(es) of {user} still running"] if after else []
    if "absent" in loginctl or "rc=0" not in loginctl:
        warnings.append("loginctl terminate-user unavailable or failed; processes were killed with pkill")
    summary = (f"killed {len(before)} process(es) of {user} (uid {uid})" if before
               else f"{user} (uid {uid}) had no running processes")
    return ActionResult(bool(before), summary, details=details, warnings=warnings)


def verify_killed(s: SshSession, args: Mapping[str, Any]) -> Verification:
    user = parse_user(args.get("user"))
    _, out, _ = s.run(_resolve(user) + 'echo "@@PROCS"; ps -o pid=,stat=,args= -U "$uid" 2>/dev/null; true',
                      timeout=10, what="list user processes")
    if "@@NOUSER" in out:
        return Verification(True, f"user {user} unknown on this host: no sessions", {"user": str(user)})
    left = _alive(_section(out, "PROCS"))
    return Verification(not left, f"{len(left)} process(es) of {user} running",
                        {"user": str(user), "processes": left[:50]})
