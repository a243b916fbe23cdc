"""Read-only evidence capture and session termination on Linux hosts.

Evidence is collected in one SSH round trip (each command bounded by ``timeout``) so it costs little before an
isolation; a failing command is recorded, never fatal — capture must not block containment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from connectors.errors import ConnectorError, InvalidInput
from connectors.linux_ssh.session import SshSession
from connectors.types import ActionResult

__all__ = ["COMMANDS", "capture", "check_user", "kill_sessions"]

COMMANDS = {
    "processes.txt": "ps auxww",
    "connections.txt": "ss -tupan",
    "users.txt": "who -a; echo; last -n 50 2>/dev/null",
    "auth_log.txt": "journalctl -n 200 --no-pager _COMM=sshd 2>/dev/null || tail -n 200 /var/log/auth.log",
    "firewall.txt": "nft list ruleset 2>/dev/null || iptables-save",
}
_MARK = "@@EVIDENCE@@"
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def capture(s: SshSession, args: Mapping[str, Any]) -> ActionResult:
    # the marker is assembled at run time so it never appears in `ps` output of this very script
    script = "M=$(printf '@@%s@@' EVIDENCE); " + "; ".join(
        f'echo "$M"{name}; timeout 5 sh -c {shlex.quote(cmd)} 2>&1; echo "$M"rc=$?'
        for name, cmd in COMMANDS.items())
    files: dict[str, str] = {}
    errors: dict[str, str] = {}
    try:
        _, out, _ = s.run(script, check=False, timeout=30, what="evidence capture")
    except ConnectorError as exc:
        return ActionResult(changed=False, summary=f"evidence capture failed: {exc.message}",
                            details={"errors": {"all": exc.message}}, warnings=[exc.message])
    for block in out.split(_MARK)[1:]:
        name, _, body = block.partition("\n")
        if name.startswith("rc="):
            continue
        files[name] = body
    rcs = re.findall(rf"{_MARK}rc=(\d+)", out)
    for (name, _), rc in zip(COMMANDS.items(), rcs):
        if rc != "0":
            errors[name] = f"exit {rc}"
    summary = f"evidence captured ({len(files)} files" + (f", {len(errors)} with errors)" if errors else ")")
    return ActionResult(changed=False, summary=summary, details={"evidence": files, "errors": errors})


def check_user(args: Mapping[str, Any]) -> str:
    user = args.get("user")
    if not isinstance(user, str):
        raise InvalidInput("user: missing")
    short = user.split("\\")[-1].split("@")[0] if ("\\" in user or "@" in user) else user
    if not _USER.fullmatch(short):
        raise InvalidInput(f"user: {user!r} is not a valid account name")
    return short


def kill_sessions(s: SshSession, args: Mapping[str, Any]) -> ActionResult:
    user = shlex.quote(check_user(args))
    script = (f"n=$(pgrep -u {user} 2>/dev/null | wc -l); "
              f"command -v loginctl >/dev/null 2>&1 && loginctl terminate-user {user} 2>/dev/null; "
              f"pkill -KILL -u {user} 2>/dev/null; echo KILLED=$n")
    _, out, _ = s.run(script, check=False, what="kill sessions")
    count = out.strip().rpartition("KILLED=")[2] or "0"
    return ActionResult(changed=count not in ("", "0"), summary=f"ended {count} process(es) of {args['user']}",
                        details={"processes": count})
