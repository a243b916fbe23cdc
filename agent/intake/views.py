"""Read models and decisions behind the API: the incident view and approve/deny with execution.

Kept out of the FastAPI module so the CLI (``agent incidents show``, ``agent approve``) and the API show and do
exactly the same things.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from agent.approvals import approval_dict, decide, plan_for
from agent.store import Action, Alert, Approval, Incident, Store, utcnow

__all__ = ["MAX_ALERTS", "decide_and_run", "incident_view"]

MAX_ALERTS = 200


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def incident_view(store: Store, incident_id: str) -> dict[str, Any] | None:
    """The incident, its newest alerts (at most :data:`MAX_ALERTS`), all actions and approvals."""
    with store.session() as s:
        inc = s.get(Incident, incident_id)
        if inc is None:
            return None
        n_alerts = s.scalar(select(func.count()).select_from(Alert).where(Alert.incident_id == incident_id))
        alerts = list(s.scalars(select(Alert).where(Alert.incident_id == incident_id)
                                .order_by(Alert.received_at.desc()).limit(MAX_ALERTS)))
        actions = list(s.scalars(select(Action).where(Action.incident_id == incident_id).order_by(Action.seq)))
        approvals = list(s.scalars(select(Approval).where(Approval.incident_id == incident_id)
                                   .order_by(Approval.requested_at)))
    return {
        "id": inc.id, "title": inc.title, "status": inc.status, "trigger": inc.trigger, "reason": inc.reason,
        "requested_by": inc.requested_by, "discovered_at": _iso(inc.discovered_at),
        "created_at": _iso(inc.created_at), "contained_at": _iso(inc.contained_at),
        "alert_count": n_alerts,
        "alerts": [{"id": a.id, "source": a.source, "rule_id": a.rule_id, "severity": a.severity, "host": a.host,
                    "user": a.user, "source_ip": a.source_ip, "digest": a.digest, "rule_name": a.rule_name,
                    "event_time": _iso(a.event_time), "received_at": _iso(a.received_at),
                    "disposition": a.disposition} for a in alerts],
        "actions": [a.summary() for a in actions],
        "approvals": [approval_dict(a) for a in approvals],
    }


def decide_and_run(svc: Any, approval_id: str, *, approve: bool, by: str, reason: str) -> tuple[Approval, bool]:
    """Decide an approval; when approved, rebuild the plan and hand it to the daemon's runner."""
    from agent.intake.dispatcher import wanted_slots
    row = decide(svc.store, svc.audit, approval_id, approve=approve, by=by, reason=reason)
    if not approve:
        from agent.intake.claims import denied
        svc.dedupe.forget_incident(row.incident_id)  # a denied incident holds no dedupe claim ...
        if denied(svc.store.engine, row.incident_id):  # ... and, when nothing was applied for it, is closed
            svc.audit.record("incident.closed", incident=row.incident_id, reason=f"approval {row.id} denied by {by}",
                             incident_status="closed")
        return row, False
    try:
        plan, ttl, run_reason = plan_for(svc.app, row)
    except Exception as exc:
        svc.audit.record("approval.plan_refused", incident=row.incident_id, approval_id=row.id, error=str(exc))
        raise
    svc.blast.reserve(wanted_slots(plan), utcnow())
    svc.runner.submit(plan, row.incident_id, reason=run_reason, ttl=ttl, approved_by=by)
    return row, True
