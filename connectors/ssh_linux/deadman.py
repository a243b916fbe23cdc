"""Confirm-or-revert for isolation: a detached timer on the host lifts the isolation unless the agent confirms.

Why on the host: if the new ruleset cuts the agent off (a NAT nobody mentioned, a wrong management address), no
command from the agent can fix it any more; the host has to undo it by itself, like Junos ``commit confirmed``.

Why a lock and a token (ARCHITECTURE lesson 13: two concurrent contains each started a timer, one PID file kept
one, and the orphan later deleted a newer containment):

- **One lock per host** for everything that arms, confirms, cancels or fires: ``flock`` on ``$D/lock`` on the
  host itself (flock(1): "manage locks from shell scripts"; the lock is held by an open file description and
  dropped when the last process holding it exits, so a killed agent never leaves it held). Every locked section
  is one short command that has already received all its input, so a dead network cannot keep the lock.
- **Every timer carries a token** (the action's, journaled in its snapshot) and the owner (``host:pid`` of the
  agent process). The record ``$D/deadman`` is ``PID TOKEN OWNER STARTED DUE`` (host clock, epoch seconds).
  A timer acts only if, under the lock, the record still names *its* PID and token: a replaced or cancelled timer
  can never undo anything. A PID is trusted only while ``/proc/PID/cmdline`` names the timer *and* its token.
- **Arming is compare-and-swap**: the caller says which live timer it expects (none, or one it is taking over);
  anything else means another run is between loading and confirming, and the arm exits with :data:`BUSY_EXIT`.
- **Confirming cancels only our own timer**; it reports when the timer is gone or belongs to another run, so the
  caller never claims a confirmation it did not make.

All text here is static apart from validated values: the integer delay, the token (hex), the owner
(``[A-Za-z0-9._-]+:[0-9]+``) and revert scripts built from parsed values.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import socket
from dataclasses import dataclass

__all__ = [
    "ARM_FAILED_EXIT",
    "BUSY_EXIT",
    "LIVE",
    "LOCK_EXIT",
    "MARKER",
    "TimerRecord",
    "arm_command",
    "cancel_any_command",
    "check_token",
    "confirm_command",
    "locked",
    "new_token",
    "owner_id",
    "owner_is_dead",
    "parse_arm",
    "parse_confirm",
    "parse_due",
    "parse_status",
    "status_command",
    "undo_own_command",
]

MARKER = "containment-deadman"
ARM_FAILED_EXIT = 90  # no live timer with our token after arming: nothing was loaded
LOCK_EXIT = 91        # the host's lock could not be taken within 30 s
BUSY_EXIT = 92        # another run's timer is live (it is between loading and confirming)
_TOKEN_RE = re.compile(r"[0-9a-f]{16,64}")
_OWNER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}:[0-9]{1,10}")

# Take the host's lock for the rest of the command (fd 9). ``exec 9>>`` opens without truncating; children that
# must outlive the command (the timer) close fd 9 so they never hold the lock by inheritance. Defined once per
# command as the function ``ca_lock`` (:mod:`.hostfuncs`): in a POSIX function ``exec`` without a command changes
# the calling shell's descriptors and ``exit`` ends the calling shell, exactly as inline.
LOCK_BODY = ('[ -d "$D" ] || mkdir -p -m 700 "$D" || { echo "cannot create the agent state directory $D" >&2; '
             f'exit {LOCK_EXIT}; }}; command -v flock >/dev/null 2>&1 || {{ echo "flock (util-linux) is not installed" '
             f'>&2; exit {LOCK_EXIT}; }}; exec 9>>"$D/lock" && flock -w 30 9 || {{ echo "DEADMAN_LOCK_TIMEOUT" >&2; '
             f'exit {LOCK_EXIT}; }}; ')
_LOCK = "ca_lock; "

# Sets p (PID of a live timer or empty), t (its token), o (owner), s (started) and u (due). Builtins and one grep.
# Defined once per command as the shell function ``ca_live`` (:mod:`.hostfuncs`, part of every command's prelude):
# a POSIX function runs in the calling shell, so the variables it sets are the caller's, exactly as if inlined.
LIVE_BODY = ('p=; t=; o=; s=; u=; { read -r p t o s u < "$D/deadman"; } 2>/dev/null; '
             'case "$p" in ""|*[!0-9]*) p="";; esac; case "$t" in ""|*[!0-9a-f]*) p="";; esac; '
             f'if [ -n "$p" ] && ! grep -qa "{MARKER} $t" /proc/"$p"/cmdline 2>/dev/null; then p=""; fi; ')
_LIVE = "ca_live; "
# Wait for a just-started timer's record: spin on the ``test`` builtin first (the timer is up within
# milliseconds), then poll with ``sleep`` for up to 3 s on a slow host. The function ``ca_wait``.
WAIT_BODY = ('i=0; while [ ! -s "$D/deadman" ] && [ $i -lt 20000 ]; do i=$((i+1)); done; '
             'i=0; while [ ! -s "$D/deadman" ] && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done; ')
_WAIT = "ca_wait; "


LIVE = _LIVE  # for other locked sections on the host (:mod:`.persist`): which timer is live


def check_token(token: str) -> None:
    """Raise ValueError unless ``token`` has the form :func:`new_token` makes (it is put in shell text)."""
    _check(token)


def new_token() -> str:
    """A fresh random token for one action (stored in its snapshot, so a reconcile knows its own timer)."""
    return secrets.token_hex(16)


def owner_id() -> str:
    """``host:pid`` of this agent process, read now (never at import: a forked server has another PID)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "unknown"
    return f"{host}:{os.getpid()}"


def owner_is_dead(owner: str) -> bool:
    """True only when ``owner`` is a process of this machine that no longer runs (or is a zombie)."""
    host, _, pid = owner.rpartition(":")
    me_host, _, me_pid = owner_id().rpartition(":")
    if host != me_host or not pid.isdigit() or pid == me_pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(") ", 1)[-1][:1] == "Z"
    except OSError:
        return True


def _check(token: str, owner: str = "x:0") -> None:
    if not _TOKEN_RE.fullmatch(token) or not _OWNER_RE.fullmatch(owner):
        raise ValueError(f"invalid dead-man token {token!r} or owner {owner!r}")


def locked(commands: str) -> str:
    """``commands`` run while holding the host's lock."""
    return _LOCK + commands


def arm_command(seconds: int, revert: str, token: str, owner: str, expect: str = "",
                priv_def: str = 'priv() { "$@"; }; ') -> str:
    """Under the lock: unless the live timer is ``expect`` (empty: none), exit :data:`BUSY_EXIT`; otherwise stop
    it (a take-over), start a timer that runs ``revert`` after ``seconds`` unless cancelled, print its PID.

    Must run after :func:`locked`'s prefix. The wait for the timer's record first spins on the ``test`` builtin
    (the timer is up within milliseconds), then polls with ``sleep`` for up to 3 s on a slow host.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"dead-man delay must be a positive int, not {seconds!r}")
    _check(token, owner)
    if expect:
        _check(expect)
    # $1: the state directory, $2: the start time. A timer that cannot write its record could never be
    # cancelled: it must not run at all. It reverts only if the record still names its own PID and token.
    inner = (f": {MARKER} {token}; {priv_def}D=$1; echo \"$$ {token} {owner} $2 $(($2 + {seconds}))\" > "
             f'"$D/deadman" || exit 1; sleep {seconds}; exec 9>>"$D/lock"; flock 9; '
             f'p=; t=; {{ read -r p t _ < "$D/deadman"; }} 2>/dev/null; '
             f'if [ "$p" = "$$" ] && [ "$t" = {token} ]; then {revert}; rm -f "$D/deadman"; '
             f'echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) {token}" > "$D/reverted"; fi')
    return (_LIVE + f'if [ "${{p:+$t}}" != "{expect}" ]; then echo "DEADMAN_BUSY=$t $o $s $u"; exit {BUSY_EXIT}; '
            'fi; if [ -n "$p" ]; then kill -15 -"$p" 2>/dev/null; fi; rm -f "$D/deadman" "$D/reverted"; '
            f'now=$(date +%s); setsid nohup sh -c {shlex.quote(inner)} {MARKER} "$D" "$now" '
            '</dev/null >/dev/null 2>&1 9>&- & '
            + _WAIT + _LIVE + f'if [ -z "$p" ] || [ "$t" != {token} ]; then echo "DEADMAN_ARM_FAILED" >&2; '
            f'exit {ARM_FAILED_EXIT}; fi; echo "DEADMAN_PID=$p"; echo "DEADMAN_DUE=$u"; ')


def confirm_command(token: str) -> str:
    """Cancel our own timer (under the lock). Prints ``DEADMAN_CONFIRMED=<pid>``, ``DEADMAN_CONFIRMED=none``
    (no live timer: it fired or someone cancelled it) or ``DEADMAN_OTHER=<token> <owner>`` (another run's)."""
    _check(token)
    return locked(_LIVE + f'if [ -n "$p" ] && [ "$t" = {token} ]; then kill -15 -"$p" 2>/dev/null; '
                  'rm -f "$D/deadman"; echo "DEADMAN_CONFIRMED=$p"; elif [ -z "$p" ]; then '
                  'rm -f "$D/deadman"; echo "DEADMAN_CONFIRMED=none"; else echo "DEADMAN_OTHER=$t $o"; fi')


def undo_own_command(token: str, revert: str, *, timer_expected: bool) -> str:
    """After a failed apply: run ``revert`` and cancel the timer only while the live timer is ours.

    Without a timer (``timer_expected`` False: confirm_seconds 0) revert unless another run's timer is live.
    Prints ``DEADMAN_UNDONE=yes`` or ``DEADMAN_UNDONE=no <why>``.
    """
    _check(token)
    mine = f'[ -n "$p" ] && [ "$t" = {token} ]' if timer_expected else f'[ -z "$p" ] || [ "$t" = {token} ]'
    return locked(_LIVE + f'if {mine}; then {revert}; if [ -n "$p" ]; then kill -15 -"$p" 2>/dev/null; fi; '
                  'rm -f "$D/deadman"; echo "DEADMAN_UNDONE=yes"; else echo "DEADMAN_UNDONE=no $t $o"; fi')


def cancel_any_command() -> str:
    """Stop whatever timer is live (release: the operator lifts the isolation, in-flight or not). Needs the lock."""
    return (_LIVE + 'if [ -n "$p" ]; then kill -15 -"$p" 2>/dev/null; echo "DEADMAN_CANCELLED=$p"; '
            'else echo "DEADMAN_CANCELLED=none"; fi; rm -f "$D/deadman"; ')


def status_command() -> str:
    """Prints ``DEADMAN_PID/TOKEN/OWNER/STARTED/DUE`` of a live timer (empty if none), ``DEADMAN_NOW`` (host
    clock) and ``DEADMAN_REVERTED`` (when a timer last reverted, and whose). Read-only, no lock needed."""
    return (_LIVE + 'echo "DEADMAN_PID=$p"; if [ -n "$p" ]; then echo "DEADMAN_TOKEN=$t"; echo "DEADMAN_OWNER=$o"; '
            'echo "DEADMAN_STARTED=$s"; echo "DEADMAN_DUE=$u"; echo "DEADMAN_NOW=$(date +%s)"; fi; r=; '
            '{ read -r r < "$D/reverted"; } 2>/dev/null; echo "DEADMAN_REVERTED=$r"')


@dataclass(frozen=True)
class TimerRecord:
    """A live timer as :func:`status_command` printed it (times on the host's clock, epoch seconds)."""

    pid: int
    token: str
    owner: str
    started: int
    due: int
    now: int

    @property
    def remaining(self) -> int:
        return max(0, self.due - self.now)

    @property
    def age(self) -> int:
        return max(0, self.now - self.started)


def _values(out: str) -> dict[str, str]:
    return {line.split("=", 1)[0]: line.split("=", 1)[1].strip() for line in out.splitlines() if "=" in line}


def parse_status(out: str) -> TimerRecord | None:
    v = _values(out)
    nums = [v.get(k, "") for k in ("DEADMAN_PID", "DEADMAN_STARTED", "DEADMAN_DUE", "DEADMAN_NOW")]
    if not all(n.isdigit() for n in nums):
        return None
    pid, started, due, now = (int(n) for n in nums)
    return TimerRecord(pid, v.get("DEADMAN_TOKEN", ""), v.get("DEADMAN_OWNER", ""), started, due, now)


def parse_arm(out: str) -> int | None:
    value = _values(out).get("DEADMAN_PID", "")
    return int(value) if value.isdigit() else None


def parse_due(out: str) -> int | None:
    """When the timer just armed will fire (host clock, epoch seconds), from :func:`arm_command`'s output."""
    value = _values(out).get("DEADMAN_DUE", "")
    return int(value) if value.isdigit() else None


def parse_confirm(out: str) -> tuple[str, str]:
    """(``confirmed`` | ``gone`` | ``other`` | ``unknown``, detail)."""
    v = _values(out)
    if "DEADMAN_CONFIRMED" in v:
        return ("gone", "") if v["DEADMAN_CONFIRMED"] == "none" else ("confirmed", v["DEADMAN_CONFIRMED"])
    if "DEADMAN_OTHER" in v:
        return "other", v["DEADMAN_OTHER"]
    return "unknown", out.strip()[-200:]
