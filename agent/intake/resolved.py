"""Resolved notifications: a sender saying its alert's condition is over. It is linked to the incident its firing
alert opened or joined, and releases containment only where the rule says ``on_resolved: release``. Kept apart
from :mod:`agent.intake.dispatcher` because linking and releasing are their own job: they never open an incident,
plan a containment or touch the blast radius.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from agent.intake.tables import IntakeIncident
from agent.intake.writer import Decision
from agent.store import Alert

if TYPE_CHECKING:  # the dispatcher builds this and passes its service in
    from agent.intake.service import IntakeService

__all__ = ["ResolvedNotices"]


class ResolvedNotices:
    """Which incident each firing alert opened or joined, and what to do when the sender says it resolved."""

    def __init__(self, service: IntakeService) -> None:
        self.svc = service
        #: (source, sender's alert key) -> incident, to link resolved notifications to what they resolve
        self._fired: dict[tuple[str, str], str] = {}

    def fired(self, source: str, key: str, incident: str) -> None:
        """An accepted alert with a sender key opened or joined ``incident``."""
        self._fired[(source, key)] = incident

    def handle(self, d: Decision) -> None:
        """A resolved notification: linked to the incident its firing alert opened or joined; never releases."""
        svc, a = self.svc, d.alert
        incident = self._fired.get((a.source, a.key)) if a.key else None
        if incident is None and a.key:
            incident = _find_fired(svc.store, a)
        svc.audit.record("alert.resolved", alert_id=d.alert_id, source=a.source, rule_id=a.rule_id, host=a.host,
                         incident=incident, digest=d.digest,
                         detail="linked; containment stays until a person or a TTL releases it" if incident
                         else "no incident of this alert was found")
        if incident:
            bulk = svc.writer.bulk

            def link(conn: Any) -> None:
                bulk["alerts"].update(conn, "id", [(d.alert_id, {"incident_id": incident})])
            svc.writer.submit_update(link)
            self._release_if_rule_says(d, incident)

    def _release_if_rule_says(self, d: Decision, incident: str) -> None:
        """``on_resolved: release`` on the rule that opened ``incident``: undo what it applied (audited)."""
        svc = self.svc
        with svc.store.session() as s:
            row = s.get(IntakeIncident, incident)
            rule_name = row.rule if row is not None else None
        rule = svc.rules.named(rule_name) if rule_name else None
        if rule is None or rule.on_resolved != "release":
            return
        rows = svc.app.planner().active_actions(None, incident=incident)
        if not rows:
            return
        plan = svc.app.planner().build_undo(rows, "resolved-release")
        reason = (f"alert {d.alert_id} from {d.alert.source} says the condition is resolved; rule {rule.name} "
                  "releases on resolved (on_resolved: release)")
        svc.audit.record("incident.release_on_resolved", incident=incident, alert_id=d.alert_id, rule=rule.name,
                         actions=[r.id for r in rows])
        svc.runner.submit(plan, incident, reason=reason)


def _find_fired(store: Any, alert: Any) -> str | None:
    """The incident of the newest stored alert from the same source with the same sender key."""
    with store.session() as s:
        rows = s.execute(select(Alert.incident_id, Alert.raw).where(
            Alert.source == alert.source, Alert.rule_id == alert.rule_id, Alert.incident_id.is_not(None),
            Alert.disposition.in_(("accepted", "deduped"))).order_by(Alert.received_at.desc()).limit(200))
        for incident, raw in rows:
            if isinstance(raw, dict) and (raw.get("normalized") or {}).get("key") == alert.key:
                return str(incident)
    return None
