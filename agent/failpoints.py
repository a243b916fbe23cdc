"""Failpoints: named places where a test can make the agent process die, to prove crash recovery for real.

``AGENT_FAILPOINTS=after-apply`` makes the process SIGKILL itself right after a connector's apply returned and
before the result is journaled — the worst moment for a containment tool; ``after-apply:pause`` sleeps there
instead (3 s), so a test can press Ctrl-C mid-run deterministically. Read once at import; a no-op otherwise.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["failpoint"]

_ACTIVE = frozenset(filter(None, os.environ.get("AGENT_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
    if f"{name}:pause" in _ACTIVE:
        time.sleep(3)
