"""What is contained now, checked against the targets (``status --verify``) or closed without them (``--forget``).

Why ``--verify``: the journal says what the agent did; only the target can say whether it is still so (an admin
flushed the ruleset, re-enabled the account). Every active containment is read back now — per item, only the
items still in effect — and drift is reported and audited. Nothing is changed.

Why ``--forget``: a host that was reimaged or decommissioned can never be released; its TTL release would be
retried forever and ``status`` would list it indefinitely. Forgetting closes its containments in the journal
(items and actions, unfinished ones too) without contacting it, with the operator's reason in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from agent.batching import active_items
from agent.errors import AgentError, InputError
from agent.items import absent_items, address_key, item_value, slice_for_undo
from agent.registry import lifts
from agent.store import ACTIVE_STATES, Action, ActionItem, Transition, utcnow
from connectors.errors import ConnectorError

__all__ = ["Check", "forget", "lifts", "verify_all"]


@dataclass
class Check:
    """One active containment read back now: ``in_effect`` | ``drift`` | ``unverified`` (could not be read)."""

    action: Action
    items: list[str]
    state: str
    summary: str
    drifted: list[str] = field(default_factory=list)  # the items no longer in effect (a batch)
    by: str | None = None  # the site worker that read it (None: this process did)
    at: Any = None  # when that worker's read was journaled

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action_id": self.action.id, "incident": self.action.incident_id,
                               "target": self.action.target, "action": self.action.action, "items": self.items,
                               "state": self.state, "summary": self.summary, "drifted": self.drifted}
        if self.action.site is not None:
            out.update(site=self.action.site, read_by=self.by, read_at=self.at.isoformat() if self.at else None)
        return out


def verify_all(app: Any, cause: str = "status --verify") -> list[Check]:
    """Read every active containment back from its target (one session per target); audit each drift and
    journal every result (agent.proof), so the next plain ``agent status`` shows when and how it was proved."""
    found = active_items(app.store)
    planner = app.planner()
    checks: list[Check] = []
    routed: list[tuple[Action, list[ActionItem]]] = []
    cfg = app.settings.workers
    runner = app.engine().runner  # the one place that opens sessions and reads state (agent.lifecycle)
    sessions = runner.sessions()
    try:
        for row, items in sorted(found.values(), key=lambda pair: pair[0].seq):
            if lifts(app.registry, row.connector, row.action) or not row.mutating or row.state != "done":
                continue
            if cfg is not None and cfg.routes(row.site):
                routed.append((row, items))  # only the site's workers reach it (and hold its credentials)
                continue
            checks.append(_check(runner, planner, sessions, row, items))
    finally:
        sessions.close_all()
    from agent.proof import record_all
    record_all(app.store, checks, cause)
    if routed:
        checks += _checks_by_workers(app, routed, cause)  # each journaled by the worker that read it
        checks.sort(key=lambda c: c.action.seq)
    for check in checks:
        if check.state == "in_effect" or check.by:  # a site worker's read is audited by that worker (one chain)
            continue
        event = "containment.drift" if check.state == "drift" else "containment.unverified"
        app.audit.record(event, incident=check.action.incident_id, action_id=check.action.id,
                         target=check.action.target, action=check.action.action, items=check.items,
                         drifted=check.drifted, detail=check.summary, cause=cause,
                         **({"site": check.action.site} if check.action.site else {}))
    return checks


def _checks_by_workers(app: Any, routed: list[tuple[Action, list[ActionItem]]], cause: str) -> list[Check]:
    """Ask each routed containment's site workers to read it back (agent/workers/reads.py), all at once, and
    wait for the journal: the worker journals the proof (naming itself) in the same transaction as its answer.
    A site whose workers do not answer is named in that containment's ``unverified`` summary."""
    from agent.runctx import current_owner
    from agent.workers.reads import for_process
    reads = for_process(app.settings, app.store, str(current_owner()))
    try:
        ids = [reads.request(str(row.site), "verify", target=row.target, target_kind=row.target_kind,
                             address=row.address, action=row.action, action_id=row.id, cause=cause)
               for row, _items in routed]
        outcomes = reads.wait(ids)
    finally:
        reads.close()
    out = []
    for (row, items), got in zip(routed, outcomes, strict=True):
        names = [i.requested for i in items]
        state = str(got.result.get("state") or "")
        if not got.ok or state not in ("in_effect", "drift", "unverified"):
            out.append(Check(row, names, "unverified", got.error or f"not read: {got.result.get('summary')}",
                             by=got.worker, at=got.at))
            continue
        drifted = _drifted(row, items, dict(got.result.get("observed") or {})) if state == "drift" else []
        out.append(Check(row, names, state, str(got.result.get("summary") or ""), drifted, by=got.worker,
                         at=got.at))
    return out


def _check(runner: Any, planner: Any, sessions: Any, row: Action, items: list[ActionItem]) -> Check:
    names = [i.requested for i in items]
    args, _snap = slice_for_undo(row, items)
    try:
        entry = planner.entry_for(row)
    except AgentError as exc:
        return Check(row, names, "unverified", f"{row.target} is not in the inventory ({exc}); if it is gone: "
                     f"agent release --forget {row.target} --reason ...")
    try:
        ver = runner.read_state(row, entry, args=args, sessions=sessions, patient=False)
    except (ConnectorError, AgentError) as exc:
        return Check(row, names, "unverified", f"could not read {row.target}: {exc}")
    if ver.in_effect:
        return Check(row, names, "in_effect", ver.summary)
    return Check(row, names, "drift", f"no longer in effect: {ver.summary}", _drifted(row, items, ver.observed))


def _drifted(row: Action, items: list[ActionItem], observed: dict[str, Any]) -> list[str]:
    """The items the read-back names as not in effect (all of them when it names none: a single action)."""
    if len(items) == 1:
        return [items[0].requested]
    absent = absent_items(row, observed)
    out = [i.requested for i in items if address_key(item_value(row, i)) in absent
           or address_key(i.requested) in absent]
    return out or [i.requested for i in items]


def forget(app: Any, target: str, reason: str) -> list[str]:
    """Close every containment of ``target`` in the journal without contacting it; the action ids closed.

    Active (applied, not undone) actions get ``undone_at`` and their items too, with a transition saying who
    forgot them and why; unfinished ones (interrupted, in doubt) end ``failed`` with error kind ``forgotten`` so
    reconciliation stops retrying them. Audited as ``containment.forgotten`` with the reason.
    """
    if not reason.strip():
        raise InputError("release --forget: --reason is required (why the target is gone: reimaged, "
                         "decommissioned, ...); it is recorded in the audit log")
    now = utcnow()
    closed: list[str] = []
    incidents: set[str] = set()
    with app.store.session() as s:
        rows = list(s.scalars(select(Action).where(Action.target == target).order_by(Action.seq)))
        for row in rows:
            active = row.kind == "apply" and row.state in ("done", "in_doubt") and row.undone_at is None
            unfinished = row.state in (*ACTIVE_STATES, "in_doubt")
            if not (active or unfinished):
                continue
            detail = f"forgotten by {app.actor}: {target} no longer exists ({reason}); not contacted"
            for item in row.items:
                if item.undone_at is None:
                    item.undone_at = now
            if unfinished:
                s.add(Transition(action_id=row.id, from_state=row.state, to_state="failed", at=now, detail=detail))
                row.state, row.error, row.error_kind = "failed", detail, "forgotten"
            else:
                s.add(Transition(action_id=row.id, from_state=row.state, to_state=row.state, at=now, detail=detail))
            if row.kind == "apply":
                row.undone_at = now
            row.updated_at = now
            closed.append(row.id)
            incidents.add(row.incident_id)
    if closed:
        app.audit.record("containment.forgotten", target=target, reason=reason, by=app.actor, action_ids=closed,
                         incidents=sorted(incidents),
                         detail="closed in the journal without contacting the target")
        engine = app.engine()
        for incident in sorted(incidents):
            engine.update_incident_status(incident)
    return closed
