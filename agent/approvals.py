"""Approval requests: plans that wait for a person (rule policy ``approve``, runbook ``approval: approve``, or
beyond the blast-radius limits), decided by ``agent approve|deny ID`` or ``POST /approvals/{id}/approve|deny``.

Life cycle: ``pending`` → ``approved`` (the plan runs with ``approved_by`` = the approver) | ``denied`` |
``expired`` (after ``daemon.approval_ttl``). Every step is audited with identity and reason (lesson 9: approval
per action, with who and why). A decision is one conditional UPDATE (``WHERE status = 'pending'``), so two
approvers, or an approver racing the expiry job, can never both win — the plan runs at most once.

The plan is rebuilt from the stored runbook, target and parameters at approval time, so every guard (protected
assets, validation) is checked again against the inventory as it is *then*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from agent.errors import InputError, NotFound
from agent.journal import AuditSink
from agent.store import Approval, Store, utcnow

__all__ = [
    "ApprovalRequest",
    "approval_dict",
    "authorize_decision",
    "decide",
    "expire_due",
    "get_approval",
    "list_approvals",
    "plan_for",
    "request_approval",
]


@dataclass
class ApprovalRequest:
    incident: str
    runbook: str
    target: str
    params: dict[str, Any]
    why: str
    ttl: timedelta | None = None
    reason: str = ""  # the run's reason, recorded on each action when it runs
    alert_id: str | None = None
    rule: str | None = None


def approval_dict(row: Approval) -> dict[str, Any]:
    extra = row.params or {}
    return {"id": row.id, "incident": row.incident_id, "runbook": row.runbook, "target": row.target,
            "params": extra.get("params", {}), "ttl_seconds": extra.get("ttl_seconds"),
            "alert_id": extra.get("alert_id"), "rule": extra.get("rule"), "status": row.status,
            "why": row.reason, "requested_at": _iso(row.requested_at), "expires_at": _iso(row.expires_at),
            "decided_by": row.decided_by, "decided_at": _iso(row.decided_at),
            "decision_reason": row.decision_reason}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def request_approval(store: Store, audit: AuditSink, req: ApprovalRequest, *, expires_in: timedelta,
                     requested_by: str) -> Approval:
    """Persist a pending approval and audit the request."""
    now = utcnow()
    row = Approval(incident_id=req.incident, runbook=req.runbook, target=req.target,
                   params={"params": req.params, "ttl_seconds": req.ttl.total_seconds() if req.ttl else None,
                           "alert_id": req.alert_id, "rule": req.rule, "reason": req.reason},
                   status="pending", reason=req.why, requested_at=now, expires_at=now + expires_in,
                   requested_by=requested_by)
    with store.session() as s:
        s.add(row)
    audit.record("approval.requested", incident=req.incident, approval_id=row.id, runbook=req.runbook,
                 target=req.target, params=req.params, why=req.why, requested_by=requested_by,
                 expires_at=row.expires_at.isoformat() if row.expires_at else None, alert_id=req.alert_id,
                 rule=req.rule)
    return row


def list_approvals(store: Store, status: str | None = "pending", incident: str | None = None) -> list[Approval]:
    with store.session() as s:
        q = select(Approval).order_by(Approval.requested_at)
        if status:
            q = q.where(Approval.status == status)
        if incident:
            q = q.where(Approval.incident_id == incident)
        return list(s.scalars(q))


def get_approval(store: Store, approval_id: str) -> Approval:
    with store.session() as s:
        row = s.get(Approval, approval_id)
    if row is None:
        raise NotFound(f"approval {approval_id!r} does not exist (see `agent approvals`)")
    return row


def decide(store: Store, audit: AuditSink, approval_id: str, *, approve: bool, by: str, reason: str = "",
           now: datetime | None = None) -> Approval:
    """Approve or deny a pending approval; raises if it is unknown, already decided or expired."""
    now = now or utcnow()
    row = get_approval(store, approval_id)
    if row.status == "pending" and row.expires_at is not None and row.expires_at <= now:
        expire_due(store, audit, now)
        row = get_approval(store, approval_id)
    status = "approved" if approve else "denied"
    with store.session() as s:
        done = s.execute(update(Approval).where(Approval.id == approval_id, Approval.status == "pending")
                         .values(status=status, decided_by=by, decided_at=now, decision_reason=reason))
        won = getattr(done, "rowcount", 0) == 1
    if not won:
        row = get_approval(store, approval_id)
        who = f" by {row.decided_by}" if row.decided_by else ""
        raise InputError(f"approval {approval_id} is already {row.status}{who}; nothing was changed")
    audit.record(f"approval.{status}", incident=row.incident_id, approval_id=approval_id, runbook=row.runbook,
                 target=row.target, decided_by=by, reason=reason)
    return get_approval(store, approval_id)


def authorize_decision(store: Store, audit: AuditSink, approval_id: str, who: str, *, four_eyes: bool,
                       channel: str) -> None:
    """Refuse (GuardRefused, audited) a decision ``who`` may not make; the same rule for API, CLI and console.

    ``who`` is an operator's name (console), an API token's name (daemon.api_tokens) or the CLI's OS user. When
    an operator of that name exists, its role decides (approver or admin) and a disabled operator is refused;
    a token or user without an operator row keeps working as before, with an audited deprecation note. With
    four-eyes on, nobody decides an approval they requested.
    """
    from agent.errors import GuardRefused
    from agent.store import Operator
    row = get_approval(store, approval_id)
    with store.session() as s:
        op = s.get(Operator, who)
    why = ""
    if op is not None and op.disabled:
        why = f"operator {who} is disabled"
    elif op is not None and op.role not in ("approver", "admin"):
        why = f"operator {who} has the role {op.role}, which may not decide approvals"
    elif four_eyes and row.requested_by and row.requested_by == who:
        why = f"four-eyes: {who} requested this action; another approver must decide"
    if why:
        audit.record("approval.decision_refused", incident=row.incident_id, approval_id=approval_id, by=who,
                     channel=channel, reason=why)
        raise GuardRefused(f"refused: {why}; nothing was changed")
    if op is None and channel == "api":
        audit.record("approval.legacy_identity", approval_id=approval_id, by=who, channel=channel,
                     note="API token without an operator of the same name: add one with `agent operators add "
                          f"{who} --role approver` (tokens without an operator are deprecated)")


def expire_due(store: Store, audit: AuditSink, now: datetime | None = None) -> list[str]:
    """Mark every pending approval past its expiry ``expired`` (audited); returns their ids."""
    now = now or utcnow()
    with store.session() as s:
        due = list(s.scalars(select(Approval).where(Approval.status == "pending", Approval.expires_at.is_not(None),
                                                    Approval.expires_at <= now)))
    expired = []
    for row in due:
        with store.session() as s:
            done = s.execute(update(Approval).where(Approval.id == row.id, Approval.status == "pending")
                             .values(status="expired", decided_at=now, decided_by="scheduler",
                                     decision_reason="no decision before the approval expired"))
            if getattr(done, "rowcount", 0) != 1:
                continue
        expired.append(row.id)
        audit.record("approval.expired", incident=row.incident_id, approval_id=row.id, runbook=row.runbook,
                     target=row.target, expires_at=row.expires_at.isoformat() if row.expires_at else None)
    return expired


def plan_for(app: Any, row: Approval) -> tuple[Any, timedelta | None, str]:
    """Rebuild the approved plan (guards checked again): ``(plan, ttl, reason)``."""
    from agent.runbook import find_runbook
    extra = row.params or {}
    book = find_runbook(app.settings.runbooks, row.runbook)
    plan = app.planner().build(book, [row.target], dict(extra.get("params") or {}))
    ttl_s = extra.get("ttl_seconds")
    reason = str(extra.get("reason") or f"approval {row.id}")
    if row.decision_reason:
        reason += f" — approved by {row.decided_by}: {row.decision_reason}"
    return plan, (timedelta(seconds=float(ttl_s)) if ttl_s else None), reason
