"""Restart: alerts stored as ``accepted`` but never decided (the daemon stopped or was killed) are rebuilt from
their rows and handed to the dispatcher again. Kept apart from :mod:`agent.intake.dispatcher` because it runs
once at start-up, reads the audit log, and has nothing to do with deciding one alert.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from agent.intake.model import NormalizedAlert
from agent.intake.tables import IntakeIncident
from agent.intake.writer import Decision
from agent.store import Alert

if TYPE_CHECKING:  # the service calls this at start-up and passes itself in
    from agent.intake.service import IntakeService

__all__ = ["decision_from_row", "requeue_undecided"]

_ONCE_EVENTS = ("incident.opened", "alert.refused", "plan.dry_run", "plan.empty")


def requeue_undecided(svc: IntakeService) -> int:
    """Alerts stored as ``accepted`` but never decided (daemon stopped or killed): decide them now."""
    with svc.store.session() as s:
        rows = list(s.execute(select(Alert, IntakeIncident).join(
            IntakeIncident, IntakeIncident.alert_id == Alert.id).where(
            Alert.disposition == "accepted").order_by(Alert.received_at)))
    decisions = [d for d in (decision_from_row(svc, alert, intake) for alert, intake in rows) if d]
    if decisions:
        written = _audited(svc.app.settings.audit_dir, {d.incident for d in decisions if d.incident})
        for d in decisions:
            d.recorded = frozenset(written.get(d.incident or "", ()))
        svc.audit.record("daemon.requeued", alerts=[d.alert_id for d in decisions])
        svc.dispatcher.put(decisions)
    return len(decisions)


def _audited(directory: Any, incidents: set[str]) -> dict[str, set[str]]:
    """Which of :data:`_ONCE_EVENTS` the audit log already holds for each of ``incidents`` (read at restart)."""
    from agent.audit.reader import records
    out: dict[str, set[str]] = {}
    if not incidents or directory is None:
        return out
    for rec in records(directory):
        incident = rec.get("incident")
        if incident in incidents and rec.get("event") in _ONCE_EVENTS:
            out.setdefault(incident, set()).add(str(rec["event"]))
    return out


def decision_from_row(svc: Any, alert: Any, intake: Any) -> Decision | None:
    """Rebuild an undecided :class:`Decision` from its stored rows (restart)."""
    rule = next((r for r in svc.rules.rules if r.name == intake.rule), None)
    if rule is None:
        return None
    norm = NormalizedAlert(source=alert.source, rule_id=alert.rule_id, severity=alert.severity, host=alert.host,
                           user=alert.user, source_ip=alert.source_ip, raw=alert.raw or {},
                           rule_name=alert.rule_name or "", event_time=alert.event_time)
    return Decision(alert_id=alert.id, alert=norm, digest=alert.digest, received_at=alert.received_at,
                    disposition="accepted", incident=alert.incident_id, new_incident=True, rule=rule,
                    target=intake.target, raw=alert.raw or {}, started=time.monotonic())
