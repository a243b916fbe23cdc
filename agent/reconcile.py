"""Reconciliation: settle what crashed runs left unfinished and what is in doubt, by reading the real state.

Run at every start (CLI commands that act, ``agent approve``, the daemon) before anything is planned on top of
the journal. Which rows: every action in ``intent``/``snapshotted``/``applying``/``verifying`` whose owning
process is gone (owner ``host:pid:start``, see :mod:`agent.runctx`; a live owner is still running it) and every
action ``in_doubt``, whoever recorded it. Each is settled by :meth:`agent.lifecycle.ActionRunner.resolve` —
verify first; effect present → done, never applied twice; absent → applied (or undone) once from the journaled
snapshot; unreadable → in doubt (re-verified on the next start and by the daemon) or, when nothing was sent yet,
left for the next start. Actions routed to a site's workers are not settled here: the site's workers hold the
credentials and settle them (lease takeovers and in-doubt sweeps, agent/workers/worker.py).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import or_, select

from agent.engine import Engine
from agent.errors import AgentError
from agent.outcomes import IN_DOUBT, Resolution
from agent.runctx import owner_alive
from agent.store import ACTIVE_STATES, Action

__all__ = ["ReconcileOutcome", "reconcile", "resolve_one", "unfinished"]

ReconcileOutcome = Resolution  # the name callers and the daemon's audit record know


def unfinished(engine: Engine, targets: Collection[str] | None = None, ids: Collection[str] | None = None
               ) -> list[Action]:
    """What reconciliation settles (on ``targets`` / ``ids`` only, when given), oldest first: unfinished actions
    whose owner is dead and actions in doubt (not undone since)."""
    with engine.store.session() as s:
        q = select(Action).where(or_(Action.state.in_(ACTIVE_STATES),
                                     (Action.state == IN_DOUBT) & Action.undone_at.is_(None)),
                                 Action.site.is_(None))  # routed to a site: its workers settle it (leases)
        if ids is not None:
            q = q.where(Action.id.in_(list(ids)))
        return [r for r in s.scalars(q.order_by(Action.seq))
                if (targets is None or r.target in targets) and (r.state == IN_DOUBT or not owner_alive(r.owner))]


def reconcile(engine: Engine, *, targets: Collection[str] | None = None,
              ids: Collection[str] | None = None) -> list[Resolution]:
    """Settle every unfinished action of a dead owner and every action in doubt — only those on ``targets`` when
    given (a command reconciles what it is about, never other hosts); returns what was done."""
    return [resolve_one(engine, row) for row in unfinished(engine, targets, ids)]


def resolve_one(engine: Engine, row: Action) -> Resolution:
    """Settle one action through the engine's ActionRunner, then refresh its incident's status."""
    try:
        entry = engine_planner_entry(engine, row)
    except AgentError as exc:  # the target left the inventory: nobody can read it; say so, keep the row
        out = Resolution(row.id, row.target, row.action, row.kind, row.state, "pending",
                         f"cannot reach {row.target}: {exc}")
        engine.audit.record("reconcile.pending", incident=row.incident_id, action_id=row.id, target=row.target,
                            error=str(exc))
        return out
    out = engine.runner.resolve(row, entry)
    engine.update_incident_status(row.incident_id)
    return out


def engine_planner_entry(engine: Engine, row: Action) -> object:
    """The inventory entry an action was journaled against (host, device or directory)."""
    from agent.plan import Planner
    return Planner(engine.settings, engine.inventory, engine.registry, engine.store, engine.ctx).entry_for(row)
