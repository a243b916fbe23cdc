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
from typing import TYPE_CHECKING, Any


from agent.approvals import ApprovalRequest, request_approval
from agent.errors import AgentError
from agent.intake.limits import dedupe_key
from agent.intake.resolved import ResolvedNotices
from agent.intake.writer import Decision
from agent.store import utcnow

if TYPE_CHECKING:  # the service builds its dispatcher and passes itself in
    from agent.intake.service import IntakeService

__all__ = ["Dispatcher", "wanted_slots"]

_STOP = object()
# Decisions recorded per bookkeeping write when the queue is busy: each write shares a group commit with the
# webhook's inserts, so smaller writes spread that cost instead of delaying one commit by several milliseconds.
_FLUSH_EVERY = 64


def wanted_slots(plan: Any) -> dict[str, set[str]]:
    """Blast-radius categories a plan would use (each action's connector declares its ``blast`` category):
    hosts to isolate, accounts to disable."""
    out: dict[str, set[str]] = {}
    for pa in plan.actions:
        category = pa.spec.blast
        if category and not pa.undo_of and pa.spec.mutating:
            if category == "accounts":  # every account of a batch, by canonical identity (not its spelling)
                names = {i.canonical for i in pa.items} or {str(pa.args.get("account") or pa.subject)}
            else:
                names = {pa.target.name}
            out.setdefault(category, set()).update(names)
    return out


class Dispatcher:
    def __init__(self, service: IntakeService) -> None:
        self.svc = service
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="alert-dispatcher", daemon=True)
        self._books: dict[str, Any] = {}
        self.idle = threading.Event()
        self.idle.set()
        self._pending: list[tuple[Decision, str, str, str | None]] = []
        self._deduped: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        #: incidents decided not to act (dry-run, refused, empty, error): alerts deduped against them while
        #: they were undecided are decided again as incidents of their own
        self._void: set[str] = set()
        self.resolved = ResolvedNotices(service)

    def start(self) -> None:
        self._thread.start()

    def preload(self) -> None:
        """Load the rules' runbooks and the inventory's connectors now, not at the first alert.

        Why: importing a connector (paramiko, pywinrm, ...) takes hundreds of milliseconds the first alert would
        wait for, and the daemon freezes its start-up heap afterwards (see agent.daemon), which only helps for
        objects that exist by then. A connector that fails to load is reported when a plan needs it, as before.
        """
        import contextlib
        from itertools import chain

        from agent.errors import AgentError
        svc = self.svc
        for rule in svc.rules.rules:
            with contextlib.suppress(AgentError):
                self._book(rule.runbook)
        inv = svc.app.inventory
        for name in sorted({e.connector for e in chain(inv.hosts.values(), inv.devices.values(),
                                                       inv.directories.values())}):
            with contextlib.suppress(Exception):  # reported by the planner when a plan needs it
                svc.app.registry.get(name)
        svc.app.planner()

    def put(self, decisions: list[Decision]) -> None:
        self.idle.clear()
        for d in decisions:
            self._queue.put(d)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the decision in progress; queued alerts stay ``accepted`` and are decided after restart."""
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def depth(self) -> int:
        """Alerts stored and waiting for their decision (``/healthz``: a growing number means falling behind)."""
        return self._queue.qsize()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.idle.wait(timeout)

    def _loop(self) -> None:
        while True:
            if self._queue.empty() or len(self._pending) >= _FLUSH_EVERY:
                self._flush()
            if self._queue.empty():
                self.idle.set()
            item = self._queue.get()
            if item is _STOP:
                self._flush(wait=True)
                return
            try:
                self.handle(item)
            except Exception as exc:  # noqa: BLE001 - one bad alert must not stop the intake
                self.svc.audit.record("alert.error", alert_id=item.alert_id, incident=item.incident,
                                      error=f"{type(exc).__name__}: {exc}")
                self._set(item, "error", f"{type(exc).__name__}: {exc}")

    # -- decisions ------------------------------------------------------------------------------------------
    def handle(self, d: Decision) -> None:
        svc, a = self.svc, d.alert
        if d.disposition == "deduped" and d.incident in self._void:
            self._promote(d)  # its holder turned out not to act: this alert gets its own decision
        if d.disposition == "deduped":  # a storm: one audit record per incident per batch, not per alert
            self._deduped.setdefault(d.incident or "", []).append(d.alert_id)
            return
        if d.disposition == "resolved":
            self.resolved.handle(d)
            return
        if d.disposition == "invalid":
            svc.audit.record("alert.invalid", alert_id=d.alert_id, source=a.source, rule_id=a.rule_id,
                             error=a.invalid, digest=d.digest)
            return
        if d.disposition != "accepted":
            event = {"no-match": "alert.unmatched"}.get(d.disposition, "alert.ignored")
            svc.audit.record(event, alert_id=d.alert_id, source=a.source, rule_id=a.rule_id, host=a.host,
                             incident=d.incident, digest=d.digest)
            return
        rule = d.rule
        if a.key and d.incident:
            self.resolved.fired(a.source, a.key, d.incident)
        discovered, discovered_source = d.received_at, "received by the daemon"
        if a.event_time is not None and a.event_time <= d.received_at:
            discovered, discovered_source = a.event_time, f"event time given by {a.source}"
        record = self._once(d)
        record("incident.opened", incident=d.incident, title=f"{rule.runbook} on {d.target}",
                         reason=f"alert {d.alert_id} matched rule {rule.name}", requested_by=f"alert:{a.source}",
                         trigger=f"alert:{a.source}", discovered_at=discovered.isoformat(), rule=rule.name,
                         facts={"discovered_at": {"value": discovered.isoformat(), "source": discovered_source},
                                "event_time": {"value": a.event_time.isoformat() if a.event_time else None,
                                               "source": f"alert:{a.source}"},
                                "received_at": {"value": d.received_at.isoformat(), "source": "agent daemon"}},
                         alert={"id": d.alert_id, "source": a.source, "rule_id": a.rule_id, "severity": a.severity,
                                "rule_name": a.rule_name, "host": a.host, "user": a.user, "source_ip": a.source_ip,
                                # the counsel report's "alerted event happened" clock fact (agent/report)
                                "event_time": a.event_time.isoformat() if a.event_time else None,
                                "digest": d.digest})
        reason = (f"alert {d.alert_id} from {a.source} (rule {a.rule_id}, severity {a.severity}"
                  f"{', ' + a.title if a.title else ''}) matched rule {rule.name}")
        params = rule.bind(a)
        try:
            book = self._book(rule.runbook)
            plan = svc.app.planner().build(book, [d.target or ""], params)  # no target: refused by the planner
        except AgentError as exc:
            record("alert.refused", alert_id=d.alert_id, incident=d.incident, rule=rule.name,
                   reason=str(exc), incident_status="closed")
            self._void_incident(d)
            self._set(d, "refused", str(exc), incident_status="closed", batch=True)
            return
        ttl = rule.ttl
        if ttl is None and book.ttl:
            from agent.validate import duration
            ttl = duration(book.ttl)
        policy = "approve" if rule.policy == "auto" and book.approval == "approve" else rule.policy
        paused = None
        if policy == "auto":
            from agent.intake.automation import automation_state
            state = automation_state(svc.store)
            if state.paused:
                policy = "approve"
                paused = (f"automation paused by {state.changed_by}"
                          f"{': ' + state.reason if state.reason else ''} (agent automation resume)")
        if policy == "dry-run":
            record("plan.dry_run", incident=d.incident, alert_id=d.alert_id, rule=rule.name,
                   plan=plan.to_dict(), reason=reason, incident_status="closed")
            # a rehearsal keeps its claim in the dry-run key space (repeated rehearsals coalesce for the window);
            # that key space is its own, so it never dedupes an alert under an auto/approve rule
            self._set(d, "dry-run", f"{len(plan.actions)} action(s) planned, nothing executed",
                      incident_status="closed", batch=True)
            return
        if not plan.actions:
            record("plan.empty", incident=d.incident, alert_id=d.alert_id, notes=plan.notes,
                   incident_status="closed")
            self._void_incident(d)
            self._set(d, "nothing-to-do", "; ".join(plan.notes) or "the plan is empty", incident_status="closed",
                      batch=True)
            return
        now = utcnow()
        if not self._claim(d, now):
            return
        slots = wanted_slots(plan)
        why = None
        if policy == "approve":
            why = paused or (f"rule {rule.name} requires approval" if rule.policy == "approve" else (
                f"runbook {book.name} requires approval"))
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

    def _once(self, d: Decision) -> Any:
        """``audit.record``, except for events a crashed run already wrote for this re-queued incident.

        Why: dry-run, refused and empty decisions are written in batches after their audit records; a daemon
        killed in between decides them again after the restart, and the counsel report counted the incident's
        opening (and its plan) twice.
        """
        if not d.recorded:
            return self.svc.audit.record

        def record(event: str, **fields: Any) -> Any:
            if event in d.recorded:
                return None
            return self.svc.audit.record(event, **fields)
        return record

    # -- dedupe claims ---------------------------------------------------------------------------------------
    def _void_incident(self, d: Decision) -> None:
        """``d``'s incident will not act: it holds no claim, and alerts deduped against it are decided anew."""
        if d.incident:
            self._void.add(d.incident)
            if len(self._void) > 100_000:
                self._void.clear()
            self.svc.dedupe.forget_incident(d.incident)

    def _claim(self, d: Decision, now: Any) -> bool:
        """Take the database claim before acting; another daemon's acting incident wins (this one joins it).

        The claim is written in the alert writer's next group commit and waited for (durable before anything
        acts): a transaction of the dispatcher's own cost one more fsync per acting incident and made the
        webhook's commits wait behind SQLite's one write lock.
        """
        from agent.intake.claims import claim
        svc, rule = self.svc, d.rule
        answers: list[tuple[bool, str]] = []

        def take(conn: Any) -> None:  # run again alone if its group commit failed: claiming twice is a no-op
            answers.append(claim(conn, rule.runbook, d.target or "", d.incident or "", now,
                                 svc.config.dedupe_window))
        svc.writer.submit_update(take).result()
        won, holder = answers[-1]
        if won:
            return True
        svc.audit.record("alert.deduped", incident=holder, count=1, alert_ids=[d.alert_id],
                         detail=f"incident {holder} (another daemon) already acts on {rule.runbook} {d.target}; "
                                f"incident {d.incident} closed without acting", incident_status="closed",
                         closed_incident=d.incident)
        svc.dedupe.forget_incident(d.incident or "")
        self._void.add(d.incident or "")
        self._set(d, "deduped", f"joined incident {holder}", incident_status="closed")
        return False

    def _promote(self, d: Decision) -> None:
        """An alert deduped against an incident that did not act becomes the opener of a new incident."""
        svc, rule, a = self.svc, d.rule, d.alert
        if rule is None or not d.target:
            return
        now = utcnow()
        old = d.incident
        svc.dedupe.forget_incident(old or "")  # a holder that does not act holds nothing
        incident, new = svc.dedupe.claim((dedupe_key(rule.policy, rule.runbook), d.target), svc._incident_id(now), now)
        d.incident, d.new_incident = incident, new
        if not new:
            return  # an earlier promoted alert opened it: join that one
        d.disposition = "accepted"
        title = f"{rule.runbook} on {d.target}: {a.source} {a.rule_id} {a.title}".strip()[:300]
        bulk = svc.writer.bulk

        def write(conn: Any) -> None:
            bulk["incidents"].insert(conn, [{
                "id": incident, "title": title, "status": "open", "trigger": f"alert:{a.source}"[:40],
                "reason": f"alert {d.alert_id} ({a.source} rule {a.rule_id}) matched rule {rule.name}; the "
                          f"incident it first joined ({old}) did not act",
                "requested_by": f"alert:{a.source}"[:200], "discovered_at": d.received_at,
                "created_at": now, "contained_at": None}])
            bulk["intake_incidents"].insert(conn, [{
                "incident_id": incident, "runbook": rule.runbook, "target": d.target, "rule": rule.name,
                "policy": rule.policy, "alert_id": d.alert_id, "opened_at": now, "decision": "queued",
                "detail": ""}])
            bulk["alerts"].update(conn, "id", [(d.alert_id, {"incident_id": incident, "disposition": "accepted"})])
        svc.writer.submit_update(write).result()
        svc.audit.record("alert.promoted", alert_id=d.alert_id, incident=incident, joined=old,
                         detail=f"incident {old} did not act (dry-run, refused or empty plan); decided anew")

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

    def _set(self, d: Decision, decision: str, detail: str, *, incident_status: str | None = None,
             batch: bool = False) -> None:
        """Record the decision on the alert, the intake row and the incident.

        ``batch``: outcomes that are safe to decide again after a crash (dry-run, refused) are written together
        with others in one transaction; anything that leads to execution or an approval is written at once,
        before it happens, so a restart never decides it twice.
        """
        self.svc.metrics.decisions.labels(decision.split(":")[0]).inc()
        with self._lock:
            self._pending.append((d, decision, detail, incident_status))
        if not batch:
            self._flush(wait=True)

    def _flush(self, wait: bool = False) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            deduped, self._deduped = self._deduped, {}
        for incident, ids in deduped.items():
            self.svc.audit.record("alert.deduped", incident=incident, count=len(ids), alert_ids=ids,
                                  detail="joined the open incident; nothing re-applied")
        if not pending:
            return
        # incident status changes are written here; the record that decided them (plan.dry_run, alert.refused,
        # ...) already carries incident_status, so no separate audit record per incident is needed
        alerts = [(d.alert_id, {"disposition": decision[:40]}) for d, decision, _, _ in pending]
        intake = [(d.incident, {"decision": decision[:40], "detail": detail})
                  for d, decision, detail, _ in pending if d.incident]
        closed = [(d.incident, {"status": status}) for d, _, _, status in pending if d.incident and status]
        bulk = self.svc.writer.bulk

        def write(conn: Any) -> None:  # one UPDATE per table, whatever the batch size (see agent.intake.bulk)
            bulk["alerts"].update(conn, "id", alerts)
            bulk["intake_incidents"].update(conn, "incident_id", intake)
            bulk["incidents"].update(conn, "id", closed)
        if wait:
            self.svc.writer.submit_update(write).result()
        else:
            self.svc.writer.submit_update(write)

    def forget(self, incident: str) -> None:
        """The incident stopped acting (denied, expired, released): free its claims in memory and in the store."""
        from agent.intake.claims import give_up
        self.svc.dedupe.forget_incident(incident)
        give_up(self.svc.store.engine, incident)
