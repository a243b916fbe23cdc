"""The gate on an applied action: the one lease on its journal row that a worker holds while it changes the target
on that action's behalf after the action was applied — a drift re-apply (agent/workers/reader.py) or an undo of
it (agent/workers/worker.py). Neither sends anything to the target without it.

Why a gate in the journal and not the daemon's target lock: the daemon asks a site's workers to re-apply a
drifted containment and waits for their answer, and a worker may take its time (its connect and command
timeouts, retries) or be frozen. Holding the target's lock over that wait stalled every release, plan and TTL
release of that target — and, as one drift pass asks for every routed containment at once, of *all* of them —
in this daemon and (advisory locks) in the other daemon, for as long as the slowest site took (≈ 115 s by
default). And the lock never covered a release made by ``agent release`` from the CLI, which takes no daemon
lock. The conflict that matters happens where both changes are made, on the worker, so it is decided there,
in the journal that every process shares:

1. A re-apply **takes the gate** (compare-and-swap on the action row's ``owner``/``lease_until``, database
   time, only from ``done`` with no live lease) *and commits it*, then checks that the action is still active
   and that **no release is under way** (:func:`release_under_way`: an undo row of it that may still send or
   may have sent — ``intent`` … ``verifying``, or ``in_doubt``) — and only then reads the target and sends.
2. An undo, once claimed by a worker, **takes the same gate** before it sends anything (waiting while a
   re-apply or a reconciliation of the action holds it; their leases lapse if their worker dies) and holds it,
   renewed, until the undo is journaled done and the action marked undone.

So the two never change the target at the same time (one lease: compare-and-swap on one row). The undo's row
is committed (``intent``, by whoever planned the release) before its worker asks for the gate; a re-apply
that took the gate first and found no such row ran before that release was planned, and the undo then waits
for it and undoes after — the host ends released, as the release asked. A re-apply that comes later finds the
undo holding the gate, or its row (the check in 1 runs after the gate is committed), and does not send: it
reports the containment "held" or "released meanwhile". A release that failed before sending (``failed``) does
not stop a later re-apply: the containment is still in force. Every transition of a re-apply is fenced by
the same lease (agent/workers/worker.py ``FencedJournal``), so a re-applier that lost the gate (frozen past its
lease) cannot send after an undo took it over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent.store import ACTIVE_STATES, Action, Store
from agent.workers.lease import IN_DOUBT, Heartbeat, db_now

__all__ = ["UNDO_UNDER_WAY", "GateWait", "release", "release_under_way", "take", "wait_for"]

#: undo states in which a release may still send, or may have sent (not failed or skipped: nothing was sent;
#: not done: then the action is marked undone, item by item)
UNDO_UNDER_WAY = (*ACTIVE_STATES, IN_DOUBT)


def take(store: Store, action_id: str, owner: str, lease: float, *, states: tuple[str, ...] = ("done",)
         ) -> str | None:
    """Take the gate of ``action_id`` for ``owner`` (compare-and-swap on its lease, as a claim): None when won,
    else who holds it. Only from ``states`` (a row mid-way — applying, verifying — is held by whoever runs it)."""
    with store.session() as s:
        now = db_now(s)
        row = s.get(Action, action_id)
        if row is None:
            return "nobody (gone)"
        if row.state not in states or (row.lease_until is not None and row.lease_until > now):
            return f"{row.owner or 'another process'} ({row.state})"
        cond = [Action.id == action_id, Action.state == row.state, Action.owner == row.owner,
                Action.lease_until.is_(None) if row.lease_until is None else Action.lease_until == row.lease_until]
        result = s.execute(update(Action).where(*cond).values(
            owner=owner, lease_until=now + timedelta(seconds=lease)))
        return None if getattr(result, "rowcount", 0) == 1 else "another worker"


def release(store: Store, action_id: str, owner: str, *, only: tuple[str, ...] | None = None) -> None:
    """Open the gate ``owner`` holds — unless the row is mid-way (then the lease lapses and the site's sweep
    reconciles it, as for any interrupted action); ``only``: just when the row is in one of these states."""
    with store.session() as s:
        state = Action.state.in_(only) if only is not None else Action.state.not_in(ACTIVE_STATES)
        s.execute(update(Action).where(Action.id == action_id, Action.owner == owner, state)
                  .values(lease_until=None))


def release_under_way(s: Session, action_id: str) -> bool:
    """An undo of ``action_id`` that may still send or may have sent (:data:`UNDO_UNDER_WAY`)."""
    return s.scalar(select(Action.id).where(Action.undo_of == action_id, Action.kind == "undo",
                                            Action.state.in_(UNDO_UNDER_WAY)).limit(1)) is not None


class GateWait(Exception):
    """The gate stayed held for as long as the undo may wait (``holder`` has it): nothing was sent."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextmanager
def wait_for(store: Store, action_id: str, owner: str, lease: float, *, within: float,
             stopping: threading.Event, claim: Callable[[str], bool], unclaim: Callable[[str], None],
             on_wait: Callable[[str], object] = lambda holder: None, tick: float = 0.2) -> Iterator[None]:
    """Hold the gate of ``action_id`` for the block (an undo of it): wait up to ``within`` seconds for it
    (raises :class:`GateWait` if it stays held, or this worker is stopping), renew it while the block runs,
    open it after. ``claim``/``unclaim``: this process's own bookkeeping (a thread of it re-applying the action
    holds the gate under the same owner name, so the lease alone cannot tell the two apart); ``on_wait(holder)``:
    called once, when the gate is first found held (the worker audits that its undo waits, and for whom)."""
    import time
    deadline = time.monotonic() + within
    waited = False
    while True:
        holder = "this worker (another thread)"
        if claim(action_id):
            holder = take(store, action_id, owner, lease, states=("done", IN_DOUBT)) or ""
            if not holder:
                break
            unclaim(action_id)
        if not waited:
            waited = True
            on_wait(holder)
        if time.monotonic() > deadline or stopping.wait(tick):
            raise GateWait(holder)
    try:
        with Heartbeat(store, action_id, owner, lease):
            yield
    finally:
        try:
            release(store, action_id, owner)
        finally:
            unclaim(action_id)
