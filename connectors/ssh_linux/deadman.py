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
    "ARM_FAILED_EXIT",
    "MARKER",
    "PIDFILE",
    "REVERTED_MARK",
    "arm_command",
    "armed_or_exit",
    "cancel_command",
    "parse_arm",
    "parse_cancel",
    "status_command",
]

PIDFILE = "/run/containment-deadman.pid"
REVERTED_MARK = "/run/containment-deadman.reverted"
MARKER = "containment-deadman"

# Shell builtins wherever possible: on a small VM every fork+exec (cat, rm, sleep) costs 2-5 ms, and these run in
# the middle of an isolation. ``{ read -r p < FILE; } 2>/dev/null`` is ``p=$(cat FILE)`` without a process.
_READ_PID = f"p=; {{ read -r p < {PIDFILE}; }} 2>/dev/null; "
# Prints the PID of a live timer (or nothing); used by cancel and by status.
_LIVE = (_READ_PID + 'case "$p" in ""|*[!0-9]*) p="";; esac; '
         f'if [ -n "$p" ] && ! grep -qa {MARKER} /proc/"$p"/cmdline 2>/dev/null; then p=""; fi; ')


def cancel_command() -> str:
    """Kill a running timer's process group (the ``sh`` and its ``sleep``) and remove the PID file."""
    return (_LIVE + 'if [ -n "$p" ]; then kill -15 -"$p" 2>/dev/null; echo "DEADMAN_CANCELLED=$p"; '
            f'else echo "DEADMAN_CANCELLED=none"; fi; if [ -e {PIDFILE} ]; then rm -f {PIDFILE}; fi')


def arm_command(seconds: int, revert: str) -> str:
    """Replace any older timer, start a new one that runs ``revert`` after ``seconds``, print its PID.

    The wait for the timer's PID file first spins on the ``test`` builtin (the timer is up within milliseconds),
    then falls back to polling with ``sleep`` for up to 3 s on a slow host.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"dead-man delay must be a positive int, not {seconds!r}")
    # A timer that cannot record its PID could never be cancelled: it must not run at all.
    inner = (f"echo $$ > {PIDFILE} || exit 1; sleep {seconds}; {revert}; rm -f {PIDFILE}; "
             f"date -u +%Y-%m-%dT%H:%M:%SZ > {REVERTED_MARK}")
    return ("{ " + cancel_command() + f"; }} >/dev/null; if [ -e {REVERTED_MARK} ]; then rm -f {REVERTED_MARK}; fi; "
            f"setsid nohup sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1 & "
            f"i=0; while [ ! -s {PIDFILE} ] && [ $i -lt 20000 ]; do i=$((i+1)); done; "
            f"i=0; while [ ! -s {PIDFILE} ] && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done; "
            + _READ_PID + 'echo "DEADMAN_PID=$p"')


ARM_FAILED_EXIT = 90  # exit status of :func:`armed_or_exit` when no live timer could be confirmed


def armed_or_exit(seconds: int, revert: str) -> str:
    """:func:`arm_command`, then stop the whole command with :data:`ARM_FAILED_EXIT` unless the timer is alive.

    Prefix for a command that must only run under an armed timer (the ruleset load), so both travel in one round
    trip without ever loading rules the host could not take back by itself.
    """
    return (arm_command(seconds, revert) + "; " + _LIVE
            + f'if [ -z "$p" ]; then echo "DEADMAN_ARM_FAILED" >&2; exit {ARM_FAILED_EXIT}; fi; ')


def status_command() -> str:
    """Prints ``DEADMAN_PID=<pid or empty>`` and ``DEADMAN_REVERTED=<time or empty>``."""
    return (_LIVE + f'echo "DEADMAN_PID=$p"; r=; {{ read -r r < {REVERTED_MARK}; }} 2>/dev/null; '
            'echo "DEADMAN_REVERTED=$r"')


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
