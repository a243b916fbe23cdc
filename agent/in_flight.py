"""A release waits for a containment still being applied to the same targets, then undoes it.

Why: a release is planned from the journal — the actions *done* and not undone. Two operators at once (or a
tired one with two terminals) can run ``agent release --host web1`` while ``agent contain --host web1`` is
between its intent and its verification: the release then found nothing done, said "nothing to undo", exited
0, and web1 ended isolated while the second operator believed it released. So before planning, a release
looks for apply actions on its targets that a live process (or a site worker with a live lease) is still
carrying out, says so, and waits for them to settle; then it plans and undoes whatever they left in effect.
If they do not settle within :func:`wait_limit` seconds, nothing is released and the message names the incident,
state and owner holding the target.

An unfinished action whose process is gone is not waited for: the command's reconciliation settles it
(agent/reconcile.py) before planning again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection

from sqlalchemy import select

from agent.runctx import owner_alive
from agent.states import ACTIVE_STATES
from agent.store import Action, Store
from agent.workers.lease import db_now

__all__ = ["DEFAULT_WAIT", "in_flight", "refuse_while_in_flight", "wait_for_in_flight", "wait_limit"]

DEFAULT_WAIT = 120.0  # seconds: a contain's connect, apply, read-back and fresh-login check, with retries


def wait_limit() -> float:
    """Seconds a release waits for changes in flight (``AGENT_IN_FLIGHT_WAIT`` overrides, for tests and for
    sites whose workers take longer)."""
    try:
        return max(0.0, float(os.environ.get("AGENT_IN_FLIGHT_WAIT", DEFAULT_WAIT)))
    except ValueError:
        return DEFAULT_WAIT


def in_flight(store: Store, *, targets: Collection[str] | None = None, incident: str | None = None
              ) -> list[Action]:
    """Apply actions on ``targets`` (or of ``incident``) not settled yet and carried out right now: by a live
    process of this host, or by a site worker whose lease is alive."""
    with store.session() as s:
        q = select(Action).where(Action.kind == "apply", Action.state.in_(ACTIVE_STATES),
                                 Action.undone_at.is_(None))
        if targets is not None:
            q = q.where(Action.target.in_(sorted(targets)))
        if incident is not None:
            q = q.where(Action.incident_id == incident)
        rows = list(s.scalars(q.order_by(Action.seq)))
        now = db_now(s)  # the database's clock, as every other lease check (agent/workers/lease.py)
    return [r for r in rows if (r.lease_until is not None and r.lease_until > now) or owner_alive(r.owner or "")]


def describe(row: Action) -> str:
    return f"{row.action} of {row.target} (incident {row.incident_id}, {row.state}, by {row.owner or 'unknown'})"


def wait_for_in_flight(store: Store, *, targets: Collection[str] | None = None, incident: str | None = None,
                       limit: float | None = None, say: Callable[[str], None] = print, tick: float = 0.25
                       ) -> list[Action]:
    """Wait until nothing is in flight on the targets; returns what still is after ``limit`` seconds ([] when
    everything settled). Says once what it waits for."""
    limit = wait_limit() if limit is None else limit
    rows = in_flight(store, targets=targets, incident=incident)
    if not rows:
        return []
    for row in rows:
        say(f"{row.target}: {describe(row)} is still being applied — waiting for it (up to {limit:g}s) before "
            "releasing, so the release undoes it")
    deadline = time.monotonic() + limit
    while rows and time.monotonic() < deadline:
        time.sleep(tick)
        rows = in_flight(store, targets=targets, incident=incident)
    return rows


def refuse_while_in_flight(store: Store, *, targets: Collection[str] | None, incident: str | None) -> int | None:
    """``agent release``'s wait (agent/commands/act.py): says on stderr what it waits for; None when the release
    may go on, else the exit code — nothing released, each unsettled action named with where to look."""
    import sys

    from agent import exitcodes
    from agent.output import err

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    left = wait_for_in_flight(store, targets=targets, incident=incident, say=say)
    for row in left:
        err(f"{row.target}: {describe(row)} is still not settled — nothing was released; run the release again "
            f"once `agent incidents show {row.incident_id}` says it is done")
    return exitcodes.REFUSED if left else None
