"""Read-only evidence capture before containment: processes, connections, users, auth log, firewall state.

Why parallel channels with hard bounds: evidence is taken right before isolating, so it must cost little and can
never block containment. Each command runs in its own SSH channel on the one connection (all at once), is bounded
by coreutils ``timeout`` on the host and by our own deadline, and the whole capture ends within
:data:`TOTAL_BUDGET` seconds. A failing or missing command is recorded under ``errors``; nothing raises.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connectors.errors import ConnectorError
from connectors.ssh_linux.session import SshSession
from connectors.types import ActionResult

__all__ = ["COMMANDS", "PER_COMMAND", "TOTAL_BUDGET", "capture"]

PER_COMMAND = 6
TOTAL_BUDGET = 9.5
# file name -> static shell text (no interpolation). The auth log falls back from journald to the classic files.
COMMANDS: dict[str, str] = {
    "processes.txt": f"timeout -k 1 {PER_COMMAND} ps auxww",
    "connections.txt": f"timeout -k 1 {PER_COMMAND} ss -tupan",
    "users.txt": (f"echo '# who -a'; timeout -k 1 {PER_COMMAND} who -a; w=$?; echo; echo '# last -n 50'; "
                  f"timeout -k 1 {PER_COMMAND} last -n 50; l=$?; [ $w -eq 0 ] || [ $l -eq 0 ]"),
    # By syslog identifier, not _COMM=sshd: OpenSSH >= 9.8 (Debian 13, RHEL 10) logs logins from the separate
    # sshd-session binary (OpenSSH 9.8 release notes: "sshd(8): split into sshd and sshd-session"); several -t
    # options are ORed (journalctl(1), --identifier).
    "auth_log.txt": (f"if command -v journalctl >/dev/null 2>&1 && out=$(timeout -k 1 {PER_COMMAND} journalctl "
                     "--no-pager -q -n 200 -t sshd -t sshd-session 2>/dev/null) && [ -n \"$out\" ]; then "
                     "echo '# journalctl -n 200 -t sshd -t sshd-session'; printf '%s\\n' \"$out\"; "
                     "else for f in /var/log/auth.log /var/log/secure; do if [ -r $f ]; then echo \"# tail $f\"; "
                     "tail -n 200 $f; exit 0; fi; done; echo 'no journald sshd entries and no auth log file' >&2; "
                     "exit 1; fi"),
    # Listing the firewall needs privileges: through ``priv`` (sudo/doas rules name nft/iptables-save, never
    # ``timeout``, which would run anything), bounded by the capture's own time budget instead.
    "firewall.txt": ("if command -v nft >/dev/null 2>&1; then echo '# nft list ruleset'; priv nft list ruleset; "
                     "else echo '# iptables-save'; priv iptables-save; r=$?; echo '# ip6tables-save'; "
                     "priv ip6tables-save; exit $r; fi"),
}


def _one(s: SshSession, name: str, cmd: str) -> tuple[str, str, str | None]:
    try:
        rc, out, err = s.run(cmd, timeout=PER_COMMAND + 2, what=name)
    except ConnectorError as exc:
        return name, "", exc.message
    if rc != 0:
        return name, out, f"exit {rc}: {err.strip()[-300:] or 'no error output'}"
    return name, out, None


def capture(s: SshSession, args: Mapping[str, Any]) -> ActionResult:
    """Run every command of :data:`COMMANDS` concurrently; return their output as evidence files."""
    from concurrent.futures import ThreadPoolExecutor, wait  # only when capturing (import cost)

    start = time.monotonic()
    evidence: dict[str, str] = {}
    errors: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=len(COMMANDS), thread_name_prefix="evidence")
    futures = {pool.submit(_one, s, name, cmd): name for name, cmd in COMMANDS.items()}
    done, pending = wait(futures, timeout=TOTAL_BUDGET)
    pool.shutdown(wait=False, cancel_futures=True)
    for fut in done:
        name, out, error = fut.result()
        evidence[name] = out
        if error:
            errors[name] = error
    for fut in pending:
        errors[futures[fut]] = f"not finished within the {TOTAL_BUDGET:g} s evidence budget"
    elapsed = round(time.monotonic() - start, 3)
    summary = (f"captured {len(evidence) - len(set(errors) & set(evidence))}/{len(COMMANDS)} evidence files "
               f"in {elapsed:.2f} s" + (f"; failed: {', '.join(sorted(errors))}" if errors else ""))
    return ActionResult(False, summary, details={"evidence": dict(sorted(evidence.items())), "errors": errors,
                                                 "seconds": elapsed})
