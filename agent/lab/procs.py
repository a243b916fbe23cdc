"""Starting and stopping the lab's daemons by PID file.

Why PID files and namespace checks: the lab must kill only what it started. Each daemon is started detached
(``setsid -f``, output to a log file, so no caller pipe stays open) and writes its own PID file; teardown kills
those PIDs plus their descendants (SSH sessions), after checking each PID still lives in one of the lab's
namespaces or still names the lab's state directory (PID reuse). PID 1 on these machines reaps late, so a zombie
counts as dead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from agent.lab.netns import SBIN_PATH

__all__ = [
    "children_map",
    "cmdline",
    "descendants",
    "is_alive",
    "net_ns_inode",
    "read_pid",
    "start_detached",
    "stop_started",
    "terminate",
]


def start_detached(argv: Sequence[str], log: Path) -> None:
    """Start ``argv`` in a new session, detached from us (``setsid -f``); stdout/stderr go to ``log``."""
    env = {"PATH": SBIN_PATH, "HOME": "/root", "LC_ALL": "C"}
    with open(log, "ab") as out:
        subprocess.run(["setsid", "-f", *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                       check=True, timeout=10)


def read_pid(path: Path) -> int | None:
    """PID stored in ``path``, or None when the file is missing or garbage."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: the fields after it start at the last ')'.
    return raw[raw.rfind(")") + 2:].split()


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (killed, waiting for a late reaper) counts as dead."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def net_ns_inode(pid: int) -> int | None:
    """Inode of the network namespace ``pid`` lives in, or None if it is gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children_map() -> dict[int, list[int]]:
    """Parent PID → child PIDs for every live process (one pass over /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def descendants(roots: Iterable[int], kids: dict[int, list[int]]) -> set[int]:
    """All descendants of ``roots`` (not the roots themselves)."""
    found: set[int] = set()
    stack = [child for root in roots for child in kids.get(root, [])]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(kids.get(pid, []))
    return found


def terminate(pids: Iterable[int], grace: float = 2.0) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, SIGKILL survivors; return PIDs that still live."""
    targets = [pid for pid in set(pids) if pid > 1 and is_alive(pid)]
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while True:
        targets = [pid for pid in targets if is_alive(pid)]
        if not targets or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 1.0
    while targets and time.monotonic() < deadline:
        time.sleep(0.01)
        targets = [pid for pid in targets if is_alive(pid)]
    return targets


def stop_started(pid_files: Iterable[Path], inodes: set[int], marker: str) -> list[int]:
    """Stop what a lab started: the PIDs in ``pid_files`` that still live in one of its namespaces (``inodes``)
    or still name its state directory (``marker``), daemons in those namespaces whose PID file was lost, and all
    their descendants; return the PIDs that survived."""
    roots: set[int] = set()
    for pid_file in pid_files:
        pid = read_pid(pid_file)
        if pid and is_alive(pid) and (net_ns_inode(pid) in inodes or marker in cmdline(pid)):
            roots.add(pid)
    kids = children_map()
    if inodes:  # daemons whose PID file was lost still name the state directory on their command line
        roots |= {pid for pids in kids.values() for pid in pids
                  if net_ns_inode(pid) in inodes and marker in cmdline(pid)}
    return terminate(roots | descendants(roots, kids))
