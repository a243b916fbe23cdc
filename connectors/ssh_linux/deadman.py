"""Confirm-or-revert for isolation: a detached timer on the host lifts the isolation unless the agent confirms.

Why on the host: if the new ruleset cuts the agent off (a NAT nobody mentioned, a wrong management address), no
command from the agent can fix it any more; the host has to undo it by itself, like Junos ``commit confirmed``.
The timer is ``setsid nohup sh -c 'sleep N; <revert>'`` in its own session (it survives the SSH session), writes
its PID to a fixed file under /run, and is cancelled by killing its process group. The PID is only trusted if
``/proc/PID/cmdline`` still names the timer (a stale file after a crash must not make us kill a stranger).
All text here is static apart from the integer delay and the static revert script.
"""

from __future__ import annotations

import shlex

__all__ = [
    "MARKER",
    "PIDFILE",
    "REVERTED_MARK",
    "arm_command",
    "cancel_command",
    "parse_arm",
    "parse_cancel",
    "status_command",
]

PIDFILE = "/run/containment-deadman.pid"
REVERTED_MARK = "/run/containment-deadman.reverted"
MARKER = "containment-deadman"

# Prints the PID of a live timer (or nothing); used by cancel and by status.
_LIVE = (f'p=$(cat {PIDFILE} 2>/dev/null); case "$p" in ""|*[!0-9]*) p="";; esac; '
         f'if [ -n "$p" ] && ! grep -qa {MARKER} /proc/"$p"/cmdline 2>/dev/null; then p=""; fi; ')


def cancel_command() -> str:
    """Kill a running timer's process group (the ``sh`` and its ``sleep``) and remove the PID file."""
    return (_LIVE + 'if [ -n "$p" ]; then kill -15 -"$p" 2>/dev/null; echo "DEADMAN_CANCELLED=$p"; '
            f'else echo "DEADMAN_CANCELLED=none"; fi; rm -f {PIDFILE}')


def arm_command(seconds: int, revert: str) -> str:
    """Replace any older timer, start a new one that runs ``revert`` after ``seconds``, print its PID."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"dead-man delay must be a positive int, not {seconds!r}")
    inner = (f"echo $$ > {PIDFILE}; sleep {seconds}; {revert}; rm -f {PIDFILE}; "
             f"date -u +%Y-%m-%dT%H:%M:%SZ > {REVERTED_MARK}")
    return ("{ " + cancel_command() + f"; }} >/dev/null; rm -f {REVERTED_MARK}; "
            f"setsid nohup sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1 & "
            f"i=0; while [ ! -s {PIDFILE} ] && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done; "
            f'echo "DEADMAN_PID=$(cat {PIDFILE} 2>/dev/null)"')


def status_command() -> str:
    """Prints ``DEADMAN_PID=<pid or empty>`` and ``DEADMAN_REVERTED=<time or empty>``."""
    return _LIVE + f'echo "DEADMAN_PID=$p"; echo "DEADMAN_REVERTED=$(cat {REVERTED_MARK} 2>/dev/null)"'


def _value(out: str, key: str) -> str:
    for line in out.splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    return ""


def parse_arm(out: str) -> int | None:
    value = _value(out, "DEADMAN_PID")
    return int(value) if value.isdigit() else None


def parse_cancel(out: str) -> int | None:
    value = _value(out, "DEADMAN_CANCELLED")
    return int(value) if value.isdigit() else None
