"""How a one-shot ``agent`` process ends: straight after a forwarded (warm) command, or after a read-only
command without the interpreter's teardown (issue 21: start-up and exit are what a responder waits for).

Standard library only: the thin warm client imports this.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the thin client ≈ 12 ms
if TYPE_CHECKING:
    import argparse

__all__ = ["exit_now", "leave", "read_only"]


def exit_now(code: int) -> None:
    """Leave without interpreter teardown, output flushed: after a forwarded command (the warm child did the
    work, this process only waited for it) and at the end of :func:`leave`."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def read_only(args: argparse.Namespace) -> bool:
    """A command that only reads and prints (``status`` without ``--verify``, ``incidents list|show``, a plan or
    a dry run: nothing is sent or journaled), leaving nothing to finish once it returns: it has closed the store,
    the audit log and its connections."""
    if args.command == "status":
        return not getattr(args, "verify", False)
    if args.command == "incidents":
        return getattr(args, "incidents_command", None) in ("list", "show")
    return args.command == "plan" or getattr(args, "dry_run", False) is True


def leave(code: int) -> None:
    """End a read-only command (:func:`read_only`) without the interpreter's teardown.

    Why: tearing SQLAlchemy's and the agent's modules down object by object, then a last cyclic collection, is
    ≈ 90 M instructions — a fifth of what ``agent status`` adds to ``import sqlalchemy.orm`` (issue 21;
    bench/cli_startup.py) — and frees memory the system takes back at exit anyway. ``status`` and ``incidents``
    also run with the cyclic GC off (≈ 70 M: they allocate much at import and keep nearly all of it, a few
    queries, well under a second); a plan or dry run keeps it on (it may read hundreds of targets). The
    ``atexit`` handlers still run (logging's flush); with another thread still alive the normal exit is kept."""
    import atexit
    import threading

    if threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    exit_now(code)
