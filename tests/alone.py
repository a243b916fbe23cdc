"""Tests marked ``alone`` run while no other test of the session runs, also under pytest-xdist.

Why: ``make test`` runs the integration files on two xdist workers. Most tests mostly wait, but a few are bound
by this machine's two cores — the 100-host outbreak acceptance runs 100 sshd hosts, workers, brokers and two
daemons, and its TTL (how long before the releases fire) was sized on a machine it had to itself. Beside
another worker's crash matrix its contain took 91 s instead of 30 and the TTL fired first. Such a test waits
until the other worker's current test is over, and the other worker starts nothing new until it is done.

How: a readers-writer lock over two files in the session's shared temp folder (the parent of each worker's
``--basetemp``). Every test holds the *room* shared; an ``alone`` test holds it exclusively. A waiting ``alone``
test first takes the *turnstile* exclusively, which every test passes (shared, released at once) before it
enters the room: new tests queue behind it instead of keeping the room busy for ever (flock(2) grants no
preference to a waiting exclusive lock).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class Gate:
    """The session's lock pair; :meth:`enter` for one test."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._turnstile: IO[str] = open(folder / "alone-turnstile.lock", "a", encoding="ascii")  # noqa: SIM115
        self._room: IO[str] = open(folder / "alone-room.lock", "a", encoding="ascii")  # noqa: SIM115

    def close(self) -> None:
        self._turnstile.close()
        self._room.close()

    @contextlib.contextmanager
    def enter(self, alone: bool) -> Iterator[None]:
        if alone:
            fcntl.flock(self._turnstile, fcntl.LOCK_EX)  # nothing new starts
            try:
                fcntl.flock(self._room, fcntl.LOCK_EX)  # what runs has finished
                try:
                    yield
                finally:
                    fcntl.flock(self._room, fcntl.LOCK_UN)
            finally:
                fcntl.flock(self._turnstile, fcntl.LOCK_UN)
            return
        fcntl.flock(self._turnstile, fcntl.LOCK_SH)
        try:
            fcntl.flock(self._room, fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self._room, fcntl.LOCK_UN)
