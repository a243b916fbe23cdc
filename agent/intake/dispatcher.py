"""The dispatcher: one thread turning stored alerts into runs, approval requests or dry-run plans, in arrival order.

For a new incident: bind the rule's parameters → build the plan (every guard runs; nothing is touched) →
policy ``dry-run`` records the plan; ``approve`` (rule or runbook) requests approval; ``auto`` checks the blast
radius — within the limits the plan runs in the runner's pool, beyond them it waits for approval. Deduped and
unmatched alerts are only audited. One thread decides so blast-radius accounting is exact; execution is
parallel. Alerts stored but not yet decided when the daemon stopped are decided after the next start.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from sqlalchemy import select, update

from agent.approvals import ApprovalRequest, request_approval
from agent.errors import AgentError
from agent.intake.limits import LIMITED_ACTIONS
from agent.intake.models import IntakeIncident
from agent.intake.writer import Decision
from agent.store import Alert, utcnow

__all__ = ["Dispatcher", "wanted_slots"]

_STOP = object()


def wanted_slots(plan: Any) -> dict[str, set[str]]:
    """Blast-radius categories a plan would use: hosts to isolate, accounts to disable."""
    out: dict[str, set[str]] = {}
    for pa in plan.actions:
        category = LIMITED_ACTIONS.get(pa.action)
        if category and not pa.undo_of and pa.spec.mutating:
            name = str(pa.args.get("account") or pa.subject) if category == "accounts" else pa.target.name
            out.setdefault(category, set()).add(name)
    return out


class Dispatcher:
    def __init__(self, service: Any) -> None:
        self.svc = service
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="alert-dispatcher", daemon=True)
        self._books: dict[str, Any] = {}
        self.idle = threading.Event()
        self.idle.set()

    def start(self) -> None:
        self._thread.start()

    def put(self, decisions: list[Decision]) -> None:
        self.idle.clear()
        for d in decisions:
            self._queue.put(d)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the decision in progress; queued alerts stay ``accepted`` and are decided after restart."""
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.idle.wait(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self.handle(item)
            except Exception as exc:  # noqa: BLE001 - one bad alert must not stop the intake
                self.svc.audit.record("alert.error", alert_id=item.alert_id, incident=item.incident,
                                      error=f"{type(exc).__name__}: {exc}")
                self._set(item, "error", f"{type(exc).__name__}: {exc}")
            if self._queue.empty():
                self.idle.set()

    # -- decisions ------------------------------------------------------------------------------------------
    def handle(self, d: Decision) -> None:
        svc, a = self.svc, d.alert
        if d.disposition != "accepted":
            event = {"deduped": "alert.deduped", "no-match": "alert.unmatched"}.get(d.disposition, "alert.ignored")
            svc.audit.record(event, alert_id=d.alert_id, source=a.source, rule_id=a.rule_id, host=a.host,
                             incident=d.incident, digest=d.digest)
            return
        rule = d.rule
        svc.audit.record("alert.accepted", alert_id=d.alert_id, source=a.source, rule_id=a.rule_id,
                         severity=a.severity, host=a.host, user=a.user, source_ip=a.source_ip, digest=d.digest,
                         rule=rule.name, incident=d.incident)
        svc.audit.record("incident.opened", incident=d.incident, title=f"{rule.runbook} on {d.target}",
                         reason=f"alert {d.alert_id} matched rule {rule.name}", requested_by=f"alert:{a.source}",
                         trigger=f"alert:{a.source}", discovered_at=d.received_at.isoformat())
        reason = (f"alert {d.alert_id} from {a.source} (rule {a.rule_id}, severity {a.severity}"
                  f"{', ' + a.title if a.title else ''}) matched rule {rule.name}")
        params = rule.bind(a)
        try:
            book = self._book(rule.runbook)
            plan = svc.app.planner().build(book, [d.target], params)
        except AgentError as exc:
            svc.audit.record("alert.refused", alert_id=d.alert_id, incident=d.incident, rule=rule.name,
                             reason=str(exc))
            self._set(d, "refused", str(exc), incident_status="closed")
            return
        ttl = rule.ttl
        if ttl is None and book.ttl:
            from agent.validate import duration
            ttl = duration(book.ttl)
        policy = "approve" if rule.policy == "auto" and book.approval == "approve" else rule.policy
        if policy == "dry-run":
            svc.audit.record("plan.dry_run", incident=d.incident, alert_id=d.alert_id, rule=rule.name,
                             plan=plan.to_dict(), reason=reason)
            self._set(d, "dry-run", f"{len(plan.actions)} action(s) planned, nothing executed",
                      incident_status="closed")
            return
        if not plan.actions:
            self._set(d, "nothing-to-do", "; ".join(plan.notes) or "the plan is empty", incident_status="closed")
            return
        now = utcnow()
        slots = wanted_slots(plan)
        why = None
        if policy == "approve":
            why = f"rule {rule.name} requires approval" if rule.policy == "approve" else (
                f"runbook {book.name} requires approval")
        else:
            why = svc.blast.check(slots, now)
            if why:
                svc.audit.record("blast_radius.exceeded", incident=d.incident, alert_id=d.alert_id,
                                 target=d.target, detail=why, usage=svc.blast.usage(now))
        if why:
            row = request_approval(svc.store, svc.audit, ApprovalRequest(
                incident=d.incident or "", runbook=book.name, target=d.target or "", params=params, why=why,
                ttl=ttl, reason=reason, alert_id=d.alert_id, rule=rule.name),
                expires_in=svc.config.approval_ttl, requested_by=svc.app.actor)
            if svc.scheduler is not None and row.expires_at is not None:
                svc.scheduler.schedule_approval_expiry(row.id, row.expires_at)
            self._set(d, "approval-pending", f"approval {row.id}: {why}")
            return
        svc.blast.reserve(slots, now)
        self._set(d, "executing", f"{len(plan.actions)} action(s)")
        svc.runner.submit(plan, d.incident or "", reason=reason, ttl=ttl, started=d.started,
                          on_done=lambda result: self._finished(d, result))

    def _finished(self, d: Decision, result: Any) -> None:
        if isinstance(result, BaseException):
            self._set(d, "interrupted" if type(result).__name__ == "Interrupted" else "error", str(result))
            return
        self._set(d, f"executed:{result.status}",
                  "; ".join(f"{o.target} {o.step} {o.state}" for o in result.outcomes)[:2000])

    def _book(self, name: str) -> Any:
        if name not in self._books:
            from agent.runbook import find_runbook
            self._books[name] = find_runbook(self.svc.app.settings.runbooks, name)
        return self._books[name]

    def _set(self, d: Decision, decision: str, detail: str, *, incident_status: str | None = None) -> None:
        svc = self.svc
        svc.metrics.decisions.labels(decision.split(":")[0]).inc()
        with svc.store.session() as s:
            s.execute(update(Alert).where(Alert.id == d.alert_id).values(disposition=decision[:40]))
            if d.incident:
                s.execute(update(IntakeIncident).where(IntakeIncident.incident_id == d.incident)
                          .values(decision=decision[:40], detail=detail))
        if incident_status and d.incident:
            svc.engine.journal.update_incident(d.incident, status=incident_status)

    def requeue_undecided(self) -> int:
        """Alerts stored as ``accepted`` but never decided (daemon stopped or killed): decide them now."""
        from agent.intake.service import decision_from_row
        svc = self.svc
        with svc.store.session() as s:
            rows = list(s.execute(select(Alert, IntakeIncident).join(
                IntakeIncident, IntakeIncident.alert_id == Alert.id).where(
                Alert.disposition == "accepted").order_by(Alert.received_at)))
        decisions = [d for d in (decision_from_row(svc, alert, intake) for alert, intake in rows) if d]
        if decisions:
            svc.audit.record("daemon.requeued", alerts=[d.alert_id for d in decisions])
            self.put(decisions)
        return len(decisions)


def _now() -> float:
    return time.monotonic()
