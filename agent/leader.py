"""Which daemon runs the scheduler: leadership by a PostgreSQL session advisory lock.

Why: two ``agent daemon`` processes on one PostgreSQL both accept alerts (dedupe is decided in the database,
:mod:`agent.intake.claims`), but the scheduler's jobs (TTL releases, re-checks, re-verification, the sweep)
live in one shared job store, and APScheduler 3 has no notion of several schedulers on one store — two running
schedulers would both fire every due job. So exactly one daemon, the *leader*, runs its scheduler; the others
keep theirs paused (jobs they add are still written to the shared store, and the leader runs them).

How, on PostgreSQL: the leader holds ``pg_try_advisory_lock(KEY)`` on a dedicated connection (its own engine,
no pool). A session-level advisory lock is held until it is unlocked or the session ends, and the server ends
the session when the client's connection closes — which is what a dead process's connection does
(https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS). Followers try the lock every
``poll`` seconds (2 s), so they take over within one poll of the leader's session ending. The leader checks its
own session every poll (``SELECT 1``); a failure means the lock may be gone: it stops being leader at once
(``on_lost``: the scheduler pauses) and tries again as a follower.

A leader that hangs or is cut off without its connection closing would keep the session (and the lock) until
TCP notices. Against that the lock session sets ``idle_session_timeout`` (PostgreSQL ≥ 14): the server ends
a session idle longer than that, and a live leader is never idle that long because it polls. Keepalives on
the client side make the leader notice a silent network loss too.

On SQLite (one machine, one daemon per database file) there is nothing to share: the daemon is always leader.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

__all__ = ["LEADER_LOCK_KEY", "Leadership"]

#: the advisory-lock key of scheduler leadership (any 64-bit number no other lock of the agent uses;
#: agent.migrations and the journal's next_seq use their own keys)
LEADER_LOCK_KEY = 0x616765_6E74_4C44  # "agentLD"
_IDLE_TIMEOUT_MS = 6000  # server ends a leader session idle this long (polls every 2 s keep it busy)


class Leadership:
    """Holds or waits for scheduler leadership; calls ``on_acquired`` / ``on_lost`` from its own thread.

    ``confirm()`` is asked just before a scheduled job runs (from the scheduler's threads): it checks the lock
    session is still alive, so a leader that lost its session between two polls does not run the job.
    """

    def __init__(self, engine: Engine, *, on_acquired: Callable[[], None], on_lost: Callable[[str], None],
                 poll: float = 2.0, key: int = LEADER_LOCK_KEY) -> None:
        self.shared = engine.dialect.name == "postgresql"
        self._url = engine.url
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self.poll = poll
        self.key = key
        self.is_leader = False
        self.backend_pid: int | None = None  # the lock session's server process (tests end it to simulate death)
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._io = threading.Lock()  # one statement at a time on the lock connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_tick: Callable[[], None] | None = None  # called each poll while leader (scheduler wake-up)

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """SQLite: leader now. PostgreSQL: one attempt now (so a lone daemon leads from its first second), then
        a thread that keeps trying (follower) or keeps checking (leader)."""
        if not self.shared:
            self._become_leader()
            return
        self._engine = create_engine(self._url, poolclass=NullPool, connect_args=_KEEPALIVES)
        self._step()
        self._thread = threading.Thread(target=self._run, name="daemon-leadership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Give leadership up (unlock, close), so a follower takes over at its next poll."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.poll + 10)
        with self._io:
            if self._conn is not None and self.is_leader:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                except Exception:  # noqa: BLE001, S110 - the session is gone: so is the lock
                    pass
            self._close()
        self.is_leader = False
        if self._engine is not None:
            self._engine.dispose()

    def halt(self) -> None:
        """Stop without unlocking or callbacks: what the process dying does (its session ends). Tests use it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.poll + 10)
        with self._io:
            self._close()

    def confirm(self) -> bool:
        """Is this daemon still leader? Checks the lock session on the spot (PostgreSQL)."""
        if not self.shared:
            return True
        if not self.is_leader:
            return False
        with self._io:
            alive = self._ping()
        if not alive:
            self._lose("lock session lost")
        return alive

    # -- polling --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._step()

    def _step(self) -> None:
        if self.is_leader:
            with self._io:
                alive = self._ping()
            if not alive:
                self._lose("lock session lost")
            elif self.on_tick is not None:
                self.on_tick()
            return
        with self._io:
            got = self._try_lock()
        if got and not self._stop.is_set():
            self._become_leader()

    def _try_lock(self) -> bool:
        assert self._engine is not None
        try:
            if self._conn is None:
                conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                self._conn = conn
                conn.execute(text(f"SET idle_session_timeout = {_IDLE_TIMEOUT_MS}"))
                self.backend_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            return bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar_one())
        except Exception:  # noqa: BLE001 - database unreachable: stay follower and try again next poll
            self._close()
            return False

    def _ping(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means the session (and the lock) may be gone
            self._close()
            return False

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass

    def _become_leader(self) -> None:
        self.is_leader = True
        self._on_acquired()

    def _lose(self, why: str) -> None:
        if self.is_leader:
            self.is_leader = False
            self._on_lost(why)


#: libpq keepalives on the lock connection: a silently dead network is noticed in seconds, not hours
_KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
                               "keepalives_count": 3, "connect_timeout": 5}
