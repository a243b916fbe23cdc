"""A worker's claim on an action: a lease in the journal row (``owner``, ``lease_until``), renewed by heartbeat.

Why a lease and not a held row lock: a worker runs an action for seconds to minutes (SSH, verification, retries
with backoff) while committing every transition; a ``SELECT … FOR UPDATE`` would have to stay open across those
commits. The lease is a compare-and-swap on the row, so exactly one worker wins it, and it says whether its holder
is alive without any process table: a worker that stops renewing (SIGKILL, lost host, lost network) lets it
expire, and another worker of the site takes the action over and reconciles it from the target's real state.

Time is the database's (``statement_timestamp()`` on PostgreSQL), so workers on hosts with skewed clocks agree on
expiry; SQLite (one machine) uses this process's clock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from collections.abc import Callable
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from agent.store import TERMINAL_STATES, Action, Store, utcnow

__all__ = ["Claim", "ClaimResult", "Heartbeat", "LeaseLost", "claim", "db_now", "renew"]

IN_DOUBT = "in_doubt"


class LeaseLost(Exception):
    """This worker's lease on an action ended (expired and taken over): it must stop writing the row."""


class ClaimResult(Enum):
    FRESH = "fresh"  # nobody had run it: run it from the start
    TAKEOVER = "takeover"  # a worker claimed it and its lease expired: reconcile from the target's state
    HELD = "held"  # a live worker holds it (a redelivery while it runs): drop this delivery
    SETTLED = "settled"  # done, failed, skipped or in doubt already: nothing to run
    MISSING = "missing"  # no such action in the journal
    LOST = "lost"  # another worker won the same race
    FOREIGN = "foreign"  # routed to another site's queue: not this worker's to run
    EXPIRED = "expired"  # fresh_only: a worker claimed it and its lease lapsed — only the site may settle it


@dataclass
class Claim:
    result: ClaimResult
    row: Action | None = None
    previous_owner: str = ""


OnClaimed = Callable[[Session, Claim], None]


def db_now(s: Session) -> datetime:
    """The database server's clock (PostgreSQL), or this process's (SQLite)."""
    if s.get_bind().dialect.name == "postgresql":
        value = s.scalar(text("SELECT statement_timestamp()"))
        assert isinstance(value, datetime)
        return value
    return utcnow()


def claim(store: Store, action_id: str, owner: str, lease: float, *, site: str | None = None,
          in_doubt: bool = False, fresh_only: bool = False, on_claimed: OnClaimed | None = None) -> Claim:
    """Claim ``action_id`` for ``owner`` for ``lease`` seconds, if nobody alive holds it (compare-and-swap);
    ``site``: only an action routed to that site; ``in_doubt``: also an action in doubt (to re-verify it);
    ``fresh_only``: only an action nobody ever claimed (the engine settling what no worker took: it must never
    take over a dead worker's action — that needs the target read, which only the site's workers can do).

    ``on_claimed(session, claim)`` runs inside the claim's transaction once the compare-and-swap won: what it
    writes (the worker's ``worker.claimed`` audit record, queued in the outbox) commits with the claim or not at
    all — a worker killed right after claiming cannot leave a claim the deployment's chain never hears of."""
    with store.session() as s:
        row = s.get(Action, action_id)
        if row is None:
            return Claim(ClaimResult.MISSING)
        if site is not None and row.site != site:
            return Claim(ClaimResult.FOREIGN, row, row.owner)
        now = db_now(s)
        if row.state in TERMINAL_STATES or (row.state == IN_DOUBT and (not in_doubt or row.undone_at is not None)):
            return Claim(ClaimResult.SETTLED, row)
        if row.lease_until is not None and row.lease_until > now:
            return Claim(ClaimResult.HELD, row, row.owner)
        fresh = row.lease_until is None and row.state == "intent"
        if fresh_only and not fresh:
            return Claim(ClaimResult.EXPIRED, row, row.owner)
        previous = row.owner  # read before the UPDATE, which refreshes the object in this session
        cond = [Action.id == action_id, Action.state == row.state, Action.owner == row.owner]
        cond.append(Action.lease_until.is_(None) if row.lease_until is None
                    else Action.lease_until == row.lease_until)
        result = s.execute(update(Action).where(*cond)
                           .values(owner=owner, lease_until=now + timedelta(seconds=lease)))
        if getattr(result, "rowcount", 0) != 1:
            return Claim(ClaimResult.LOST, row)
        won = Claim(ClaimResult.FRESH if fresh else ClaimResult.TAKEOVER, row, previous)
        if on_claimed is not None:
            on_claimed(s, won)
    row.owner, row.lease_until = owner, now + timedelta(seconds=lease)
    return won


def renew(store: Store, action_id: str, owner: str, lease: float, model: Any = Action) -> bool:
    """Extend ``owner``'s lease; False when it is no longer ``owner``'s (taken over after it expired).
    ``model``: the leased table — an action, or a site read (agent/workers/reads.py), which leases the same way."""
    with store.session() as s:
        now = db_now(s)
        result = s.execute(update(model).where(model.id == action_id, model.owner == owner)
                           .values(lease_until=now + timedelta(seconds=lease)))
        return getattr(result, "rowcount", 0) == 1


class Heartbeat:
    """Renews one lease every ``lease / 3`` seconds in a thread while the action runs.

    A renewal that finds the row owned by someone else sets :attr:`lost` (the journal's fencing then refuses this
    worker's next transition); a renewal that cannot reach the database is retried on the next beat — the
    lease may expire meanwhile, which is exactly what it is for.
    """

    def __init__(self, store: Store, action_id: str, owner: str, lease: float, model: Any = Action) -> None:
        self.store, self.action_id, self.owner, self.lease, self.model = store, action_id, owner, lease, model
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{action_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                if not renew(self.store, self.action_id, self.owner, self.lease, self.model):
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001, S110 - database unreachable: retry next beat; the lease may lapse
                pass
