"""Per-target locks across daemons: a PostgreSQL session advisory lock per target name.

Why: the daemon's runner serialises everything that reads and changes one target (a plan, a TTL release, a
drift re-verification, a re-check) with an in-process lock (:class:`agent.intake.runner.Runner.locked`). With
two daemons on one PostgreSQL, the leader's TTL release of ``web2`` and the other daemon's new plan for
``web2`` are in different processes, and the in-process lock does not see both. Here each outermost hold of a
target also takes ``pg_advisory_lock(NAMESPACE, key(target))`` on a connection of its own, held while the
target is worked on and released by closing it — which the server also does if the process dies
(https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS).

Keys are a CRC-32 of the name (a collision only makes two targets wait for each other) and are taken in key
order, so two daemons locking overlapping sets cannot deadlock. On SQLite (one daemon) this does nothing.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

__all__ = ["NAMESPACE", "TargetLocks", "target_key"]

#: first key of the two-int advisory lock form; other agent locks use the one-bigint form (no overlap)
NAMESPACE = 0x61677454  # "agtT"


def target_key(name: str) -> int:
    """A signed 32-bit key for a target name (the second argument of ``pg_advisory_lock(int, int)``)."""
    value = zlib.crc32(name.encode("utf-8"))
    return value - (1 << 32) if value >= 1 << 31 else value


class TargetLocks:
    def __init__(self, engine: Engine) -> None:
        self.shared = engine.dialect.name == "postgresql"
        # own connections, not the pool's: a held lock must not starve the journal writes made while holding it
        self._engine = create_engine(engine.url, poolclass=NullPool) if self.shared else None

    @contextlib.contextmanager
    def hold(self, targets: Iterable[str]) -> Iterator[None]:
        """Hold every target's lock (waiting for another daemon that holds one) for the block."""
        keys = sorted({target_key(t) for t in targets})
        if self._engine is None or not keys:
            yield
            return
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for key in keys:
                conn.execute(text("SELECT pg_advisory_lock(:ns, :key)"), {"ns": NAMESPACE, "key": key})
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # the session may be gone: so are its locks
                    conn.execute(text("SELECT pg_advisory_unlock_all()"))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
