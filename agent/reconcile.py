"""Reconciliation: finish or fail actions a crashed process left mid-way, by reading the target's real state.

Rules (the engine's invariant "never apply twice"):
- an *apply* left in intent/snapshotted/applying/verifying: verify first. Effect present → mark done (it was applied
  before the crash; not applied again). Effect absent → the apply never took effect: take a snapshot if none was
  journaled, apply once, verify, mark done — or failed with the reason.
- an *undo* left mid-way: verify; effect absent → done; present → run the undo from the journaled snapshot.
- target unreachable → left as is, reported, retried on the next start.
Only actions whose owning process is gone are touched (owner ``host:pid``), so two live processes never fight.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from agent.engine import Engine
from agent.errors import AgentError
from agent.runctx import owner_alive
from agent.store import ACTIVE_STATES, Action
from connectors.errors import ConnectorError
from connectors.types import Snapshot

__all__ = ["ReconcileOutcome", "reconcile", "unfinished"]


@dataclass
class ReconcileOutcome:
    action_id: str
    target: str
    action: str
    kind: str
    from_state: str
    outcome: str  # done | failed | pending
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def unfinished(engine: Engine, targets: Collection[str] | None = None) -> list[Action]:
    """Unfinished actions owned by a dead process (on ``targets`` only, when given), oldest first."""
    with engine.store.session() as s:
        return [r for r in s.scalars(select(Action).where(Action.state.in_(ACTIVE_STATES)).order_by(Action.seq))
                if (targets is None or r.target in targets) and not owner_alive(r.owner)]


def reconcile(engine: Engine, *, targets: Collection[str] | None = None) -> list[ReconcileOutcome]:
    """Reconcile every unfinished action owned by a dead process — only those on ``targets`` when given (a
    command reconciles what it is about, never other hosts); returns what was done."""
    rows = unfinished(engine, targets)
    outcomes = []
    for row in rows:
        outcomes.append(_reconcile_one(engine, row))
    return outcomes


def _reconcile_one(engine: Engine, row: Action) -> ReconcileOutcome:
    from_state = row.state
    out = ReconcileOutcome(row.id, row.target, row.action, row.kind, from_state, "pending", "")
    engine.audit.record("reconcile.start", incident=row.incident_id, action_id=row.id, target=row.target,
                        action=row.action, kind=row.kind, state=from_state)
    if not row.mutating:
        out.outcome, out.detail = "failed", "interrupted read-only action; nothing to reconcile on the target"
        engine.journal.transition(row, "failed", out.detail, error=out.detail, error_kind="interrupted")
        return out
    try:
        entry = engine_planner_entry(engine, row)
        conn = engine.registry.get(row.connector)
        creds = entry.credentials.resolve() if entry.credentials else None
        if creds is None:
            raise AgentError(f"no credentials for {row.target}")
        session = conn.open(entry.target(row.address or None), creds, engine.ctx)
        try:
            ver = conn.verify(session, row.action, row.args)
            want_effect = row.kind == "apply"
            if ver.in_effect == want_effect:
                detail = (f"reconciled after interruption in state {from_state}: target shows the "
                          f"{'change' if want_effect else 'undo'} in effect; not re-applied")
                engine.journal.transition(row, "done", detail, verification=ver.to_dict(),
                                          changed=row.changed if row.changed is not None else 1)
                if row.kind == "undo" and row.undo_of:
                    engine.journal.mark_undone(row.undo_of, row.id)
            elif row.kind == "apply":
                snap = Snapshot(dict(row.snapshot)) if row.snapshot else conn.snapshot(session, row.action, row.args)
                if not row.snapshot:
                    engine.journal.transition(row, "snapshotted", "snapshot taken during reconciliation",
                                              snapshot=snap.to_dict())
                if row.state != "applying":
                    engine.journal.transition(row, "applying", "completing interrupted action")
                res = conn.apply(session, row.action, row.args, snap)
                engine.journal.transition(row, "verifying", res.summary, result=res.to_dict(),
                                          changed=int(res.changed))
                ver = conn.verify(session, row.action, row.args)
                if not ver.in_effect:
                    raise ConnectorError(f"applied during reconciliation but not in effect: {ver.summary}")
                detail = f"reconciled: interrupted in state {from_state} before the change took effect; applied once"
                engine.journal.transition(row, "done", detail, verification=ver.to_dict())
            else:
                snap = Snapshot(dict(row.snapshot or {}))
                res = conn.undo(session, row.action, row.args, snap)
                ver = conn.verify(session, row.action, row.args)
                if ver.in_effect:
                    raise ConnectorError(f"undo during reconciliation left the change in effect: {ver.summary}")
                detail = f"reconciled: interrupted undo completed ({res.summary})"
                engine.journal.transition(row, "done", detail, result=res.to_dict(), verification=ver.to_dict(),
                                          changed=int(res.changed))
                if row.undo_of:
                    engine.journal.mark_undone(row.undo_of, row.id)
            out.outcome, out.detail = "done", detail
        finally:
            session.close()
    except ConnectorError as exc:
        if exc.transient:
            out.detail = f"target unreachable, will retry on next start: {exc.message}"
            engine.audit.record("reconcile.pending", incident=row.incident_id, action_id=row.id,
                                target=row.target, error=str(exc))
        else:
            out.outcome, out.detail = "failed", f"reconciliation failed: {exc.message}"
            engine.journal.transition(row, "failed", out.detail, error=str(exc), error_kind=exc.kind)
    except AgentError as exc:
        out.outcome, out.detail = "failed", f"reconciliation failed: {exc}"
        engine.journal.transition(row, "failed", out.detail, error=str(exc), error_kind="config")
    engine.update_incident_status(row.incident_id)
    return out



def engine_planner_entry(engine: Engine, row: Action) -> Any:
    """The inventory entry an action was journaled against (host, device or directory)."""
    from agent.plan import Planner
    return Planner(engine.settings, engine.inventory, engine.registry, engine.store, engine.ctx).entry_for(row)
