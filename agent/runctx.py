"""What describes *this run*: whose actions these are, which failpoints are armed, whether output is a terminal.

Why a module of its own, and why every answer is computed when asked: under ``agent warm`` (and the daemon, which
starts one) a pre-imported server forks one child per CLI command. Anything read at import time describes the
*server* — its pid, its environment, its terminal — not the technician's command. A journal owned by the server's
pid made reconciliation skip actions whose CLI client had been SIGKILLed (the "owner" still looked alive), and
``AGENT_FAILPOINTS`` and colour followed the server. So the warm child calls :func:`adopt_client` with the client's
pid (taken from ``SO_PEERCRED``, not from the request) before running the command, and everything here reads the
process state and ``os.environ`` at the moment of the call.

An owner is ``host:pid:start`` — ``start`` is the process start time in clock ticks since boot
(``/proc/PID/stat`` field 22, proc(5)), so a pid reused by an unrelated process after a crash is not mistaken for
the owner. Journals written before this format (``host:pid``) are still understood.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

__all__ = ["Owner", "adopt_client", "armed", "client_pid", "colour_enabled", "current_owner", "failpoint",
           "owner_alive", "start_ticks"]

_CLIENT: list[int] = []  # set once in a warm child, before the command runs: the pid of the CLI client


@dataclass(frozen=True)
class Owner:
    """The process a journaled action belongs to."""

    host: str
    pid: int
    start: int | None  # None: an owner written by an older release ("host:pid")

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}" if self.start is None else f"{self.host}:{self.pid}:{self.start}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """``host:pid:start`` or the older ``host:pid``; None when it is neither."""
        head, _, last = text.rpartition(":")
        if not last.isdigit() or not head:
            return None
        host, _, middle = head.rpartition(":")
        if host and middle.isdigit():
            return cls(host, int(middle), int(last))
        return cls(head, int(last), None)


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: fields after the *last* ')' are fixed
    fields = stat.rsplit(b")", 1)[1].split()
    if fields[0] == b"Z":  # a zombie is dead for our purposes
        return None
    return int(fields[19])  # field 22 overall; fields[0] is field 3


def adopt_client(pid: int) -> None:
    """Warm child: the run belongs to the CLI client ``pid`` (its actions, its failpoints, its death)."""
    _CLIENT[:] = [pid]


def client_pid() -> int | None:
    """The warm client's pid in a warm child, None in a cold run."""
    return _CLIENT[0] if _CLIENT else None


def current_owner() -> Owner:
    """The owner of actions started now: the CLI client when warm, this process otherwise."""
    pid = _CLIENT[0] if _CLIENT else os.getpid()
    return Owner(socket.gethostname(), pid, start_ticks(pid))


def owner_alive(text: str) -> bool:
    """Is the process that owns an action still running (so nobody else may finish it)?

    Owners on other hosts are treated as gone only by the host that owns them; this agent sees one host's
    processes, so a foreign owner counts as dead (the single-machine case; the scale-out design uses leases).
    """
    owner = Owner.parse(text)
    if owner is None or owner.host != socket.gethostname():
        return False
    me = current_owner()
    if owner.pid == me.pid and owner.start in (None, me.start):
        return False  # our own leftovers: we are starting, so whatever wrote them is not running them
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = start_ticks(owner.pid)
    if started is None:
        return False
    return owner.start is None or owner.start == started


def armed() -> frozenset[str]:
    """Failpoints armed for this run (``AGENT_FAILPOINTS``, read now: a warm child has the client's value)."""
    return frozenset(filter(None, os.environ.get("AGENT_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    """Die here (SIGKILL), pause here (``NAME:pause``, 3 s) or stop here (``NAME:stop``: the process stops itself
    with SIGSTOP until a test sends SIGCONT — so a test orders a race exactly: it sees the process stopped at this
    point, arranges the other side, then lets it go on) if this run armed the failpoint ``name``.

    Warm, the client dies first with the same signal, so the caller sees exactly what a cold run shows.
    """
    active = armed()
    if not active:
        return
    if name in active:
        client = client_pid()
        if client is not None:
            try:
                os.kill(client, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.kill(os.getpid(), signal.SIGKILL)
    if f"{name}:pause" in active:
        time.sleep(3)
    if f"{name}:stop" in active:
        os.kill(os.getpid(), signal.SIGSTOP)


def colour_enabled() -> bool:
    """Colour only on a terminal, unless ``NO_COLOR`` or ``TERM=dumb`` (https://no-color.org/); asked per call."""
    if os.environ.get("NO_COLOR") is not None or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
