"""What each console page shows, read from the journal, the approvals table and the audit log (nothing here
changes anything; decisions go through :mod:`agent.approvals`, like the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from agent.containments import lifts
from agent import journal_reads
from agent.proof import checks_in
from agent.store import Action, Approval, Incident, Transition, utcnow

__all__ = ["Contained", "approval_detail", "contained_now", "incident_detail", "incidents", "pending_approvals"]

@dataclass(frozen=True)
class Contained:
    target: str
    action: str
    incident: str
    since: datetime
    expires_at: datetime | None
    last_verified: datetime | None
    verified_ok: bool | None
    state: str


def contained_now(app: Any) -> list[Contained]:
    """Applied, changed, not undone mutating actions (and in-doubt ones, which may be in force)."""
    out = []
    with app.store.session() as s:  # the same reads as `agent status` (agent.journal_reads), one transaction
        doubtful = [r for r in journal_reads.in_doubt(s) if r.kind == "apply" and r.mutating == 1]
        rows = sorted([*journal_reads.contained(s), *doubtful], key=lambda r: r.seq)
        # lifting actions (unblock lifts block) are never contained state: the connectors declare which they are
        rows = [r for r in rows if not lifts(app.registry, r.connector, r.action)]
        # the newest read-back, as `agent status` shows it: the run's own, `status --verify`'s or the daemon's
        checks = checks_in(s, [r.id for r in rows])
    for r in rows:
        check = checks.get(r.id)
        ok = None if check is None or check.result == "unverified" else check.result == "in_effect"
        out.append(Contained(target=r.target, action=r.action if r.target_kind == "host" else
                             f"{r.action} {r.subject}", incident=r.incident_id, since=r.created_at,
                             expires_at=r.expires_at, last_verified=check.at if check else None,
                             verified_ok=ok, state=r.state))
    return out


def pending_approvals(app: Any) -> list[Approval]:
    from agent.approvals import expire_due, list_approvals
    expire_due(app.store, app.audit)
    return list_approvals(app.store, "pending")


def approval_detail(app: Any, approval_id: str) -> tuple[Approval, list[str], str]:
    """The approval, the exact plan it will run (as the notification shows it), and an error if it cannot."""
    from agent.approvals import get_approval
    from agent.notify.wiring import approval_plan_lines
    row = get_approval(app.store, approval_id)
    lines = approval_plan_lines(app, approval_id) if row.status == "pending" else []
    return row, lines, ""


def incidents(app: Any, limit: int = 200) -> list[Incident]:
    with app.store.session() as s:
        return list(s.scalars(select(Incident).order_by(Incident.created_at.desc()).limit(limit)))


def incident_detail(app: Any, incident_id: str) -> dict[str, Any]:
    """The incident, its actions with their transitions (the timeline), and the counsel view of it: evidence
    hashes, audit verification and the notification checklist, built exactly as ``agent report`` builds it."""
    from agent.errors import NotFound
    with app.store.session() as s:
        inc = s.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"no incident {incident_id!r}")
        acts = list(s.scalars(select(Action).where(Action.incident_id == incident_id).order_by(Action.seq)))
        steps = list(s.scalars(select(Transition).where(Transition.action_id.in_([a.id for a in acts]))
                               .order_by(Transition.at, Transition.id)))
    by_id = {a.id: a for a in acts}
    timeline = [{"at": t.at, "target": by_id[t.action_id].target, "action": by_id[t.action_id].action,
                 "kind": by_id[t.action_id].kind, "from": t.from_state, "to": t.to_state, "detail": t.detail}
                for t in steps]
    return {"incident": inc, "actions": acts, "timeline": timeline, "counsel": _counsel(app, incident_id),
            "now": utcnow()}


def _counsel(app: Any, incident_id: str) -> dict[str, Any] | None:
    """The counsel report's content for this incident, built as ``agent report`` builds it (None when the audit
    log has no records for it)."""
    from agent.commands.report import build_incident_report
    from agent.report.content import report_content

    built = build_incident_report(app, incident_id)
    if built is None:
        return None
    content: dict[str, Any] = report_content(built[0])
    return content
