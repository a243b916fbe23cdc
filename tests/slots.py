"""Machine-wide test slots: an exclusive lock per name, so parallel test sessions (two checkouts, CI beside a
developer) never build network namespaces with the same names. Namespaces are machine-wide, so the locks are too."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

LOCK_DIR = Path("/run/containment-agent/lab-locks")


@contextlib.contextmanager
def claim(candidates: Sequence[str], what: str) -> Iterator[str]:
    """Hold the lock of the first free name in ``candidates`` for the ``with`` block; skip if all are taken."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for candidate in candidates:
        handle: IO[str] = open(LOCK_DIR / f"{candidate}.lock", "w", encoding="ascii")  # noqa: SIM115 (held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield candidate
        finally:
            handle.close()
        return
    pytest.skip(f"all {what} ({candidates[0]}..{candidates[-1]}) are in use by other test sessions")
