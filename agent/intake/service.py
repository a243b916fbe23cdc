"""The intake service: everything between an HTTP request and the dispatcher, without HTTP.

Request path (kept minimal — it is what an alert storm hits): look up the source (404) → check the size (413)
→ authenticate (401) → parse JSON and normalise (400) → match a rule and claim the dedupe key (memory) → one
group-committed INSERT → enqueue → answer 202. Every rejection is audited with its reason and never acted on.
The rest (planning, limits, approvals, execution) happens in the dispatcher thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.app import App, new_incident_id
from agent.intake.auth import ApiAuth, AuthFailed, SourceAuth
from agent.intake.config import DaemonConfig
from agent.intake.limits import BlastRadius, DedupeIndex
from agent.intake.metrics import Metrics
from agent.intake.model import MalformedAlert, NormalizedAlert
from agent.intake.normalizers import normalize
from agent.intake.rules import RuleSet, load_rules
from agent.intake.writer import AlertWriter, Decision
from agent.store import utcnow

__all__ = ["IntakeRejected", "IntakeService", "decision_from_row"]


@dataclass
class IntakeRejected(Exception):
    """A request refused before anything was stored; ``status`` is the HTTP answer."""

    status: int
    reason: str
    code: str  # metric/audit label: unknown_source | too_large | unauthenticated | invalid_json | malformed

    def __str__(self) -> str:
        return self.reason


class IntakeService:
    def __init__(self, app: App, config: DaemonConfig, *, engine: Any = None, metrics: Metrics | None = None,
                 rules: RuleSet | None = None) -> None:
        from agent.intake.dispatcher import Dispatcher
        from agent.intake.models import create_tables
        from agent.intake.runner import Runner
        self.app, self.config = app, config
        self.store, self.audit = app.store, app.audit
        create_tables(self.store.engine)
        self.engine = engine or app.engine()
        self.metrics = metrics or Metrics(self.store)
        self.rules = rules if rules is not None else load_rules(app.settings.rules, app.settings.runbooks)
        self.sources = {name: (src, SourceAuth(src)) for name, src in config.sources.items()}
        self.api = ApiAuth(config)
        self.dedupe = DedupeIndex(config.dedupe_window)
        self.blast = BlastRadius(config.max_hosts, config.max_accounts, config.blast_window)
        self.runner = Runner(self.engine, max_parallel=app.settings.max_parallel,
                             retry_attempts=config.retry_attempts, retry_interval=config.retry_interval,
                             metrics=self.metrics)
        self.dispatcher = Dispatcher(self)
        self.writer = AlertWriter(self.store, self.dispatcher.put)
        self.scheduler: Any = None
        self._ids_lock = threading.Lock()
        self._ids_second, self._ids_used = 0, set[str]()

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._load_state()
        self.writer.start()
        self.dispatcher.start()
        self.dispatcher.requeue_undecided()

    def stop(self, grace: float | None = None) -> None:
        self.dispatcher.stop()
        self.runner.shutdown(self.config.shutdown_grace.total_seconds() if grace is None else grace)
        self.writer.stop()

    def _load_state(self) -> None:
        from sqlalchemy import select

        from agent.intake.limits import LIMITED_ACTIONS
        from agent.intake.models import IntakeIncident
        from agent.store import Action, Incident
        now = utcnow()
        since = now - max(self.config.dedupe_window, self.config.blast_window)
        with self.store.session() as s:
            claims = list(s.execute(
                select(IntakeIncident.runbook, IntakeIncident.target, IntakeIncident.incident_id,
                       IntakeIncident.opened_at).join(Incident, Incident.id == IntakeIncident.incident_id)
                .where(IntakeIncident.opened_at >= since, Incident.status != "released")))
            acts = list(s.scalars(select(Action).where(
                Action.kind == "apply", Action.action.in_(list(LIMITED_ACTIONS)), Action.state != "failed",
                Action.created_at >= since)))
        self.dedupe.load([(r[0], r[1], r[2], r[3]) for r in claims], now)
        self.blast.load([(a.action, str((a.args or {}).get("account") or a.subject)
                          if a.action == "disable_account" else a.target, a.created_at) for a in acts], now)

    # -- request path ---------------------------------------------------------------------------------------
    def source_auth(self, name: str) -> SourceAuth:
        if name not in self.sources:
            raise IntakeRejected(404, f"unknown alert source {name[:80]!r} (configured: "
                                      f"{', '.join(sorted(self.sources)) or 'none'})", "unknown_source")
        return self.sources[name][1]

    def prepare(self, name: str, headers: Mapping[str, str], body: bytes, started: float) -> list[Decision]:
        """Authenticate, parse, normalise and decide dedupe for one request (no I/O; raises IntakeRejected)."""
        auth = self.source_auth(name)
        try:
            auth.check(headers, body)
        except AuthFailed as exc:
            raise IntakeRejected(401, str(exc), "unauthenticated") from None
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise IntakeRejected(400, f"body is not valid JSON: {str(exc)[:120]}", "invalid_json") from None
        try:
            alerts = normalize(self.sources[name][0].format, payload, name)
        except (MalformedAlert, RecursionError) as exc:
            raise IntakeRejected(400, str(exc)[:500], "malformed") from None
        digest = hashlib.sha256(body).hexdigest()
        now = utcnow()
        raw_all = payload if len(alerts) == 1 else None
        out = []
        for i, alert in enumerate(alerts):
            raw = {"payload": raw_all if raw_all is not None else _element(payload, i), "normalized": alert.raw}
            out.append(self.decide(alert, digest, now, raw, started))
        return out

    def decide(self, alert: NormalizedAlert, digest: str, now: Any, raw: dict[str, Any],
               started: float) -> Decision:
        d = Decision(alert_id=str(uuid.uuid4()), alert=alert, digest=digest, received_at=now,
                     disposition="no-match", raw=raw, started=started)
        if not alert.actionable:
            d.disposition = "not-actionable"
            return d
        rule = self.rules.match(alert, self.app.inventory)
        target = rule.target(alert) if rule else None
        if rule is None or target is None:
            return d
        d.rule, d.target = rule, target
        incident, new = self.dedupe.claim((rule.runbook, target), self._incident_id(now), now)
        d.incident, d.new_incident = incident, new
        d.disposition = "accepted" if new else "deduped"
        return d

    def _incident_id(self, now: Any) -> str:
        """A new incident id, unique in this process even when hundreds open in the same second."""
        key = int(now.timestamp())
        with self._ids_lock:
            if key != self._ids_second:
                self._ids_second, self._ids_used = key, set()
            while True:
                candidate = new_incident_id(now)
                if candidate not in self._ids_used:
                    self._ids_used.add(candidate)
                    return candidate

    def unclaim(self, decisions: list[Decision]) -> None:
        """The write failed: give the dedupe keys back so a retried request is not wrongly deduped."""
        for d in decisions:
            if d.new_incident and d.rule is not None and d.target and d.incident:
                self.dedupe.release((d.rule.runbook, d.target), d.incident)

    def count(self, decisions: list[Decision]) -> None:
        for d in decisions:
            self.metrics.received.labels(d.alert.source).inc()
            if d.disposition == "deduped":
                self.metrics.deduped.labels(d.alert.source).inc()
        if decisions:
            self.metrics.intake_latency.observe(time.monotonic() - decisions[0].started)

    def reject(self, name: str, exc: IntakeRejected, client: str, size: int) -> None:
        known = name if name in self.sources else "(unknown)"
        self.metrics.rejected.labels(known, exc.code).inc()
        self.audit.record("alert.rejected", source=name[:80], status=exc.status, code=exc.code, reason=exc.reason,
                          client=client, size=size)


def _element(payload: Any, i: int) -> Any:
    for key in ("alerts",):
        if isinstance(payload, dict) and isinstance(payload.get(key), list) and i < len(payload[key]):
            return payload[key][i]
    return payload


def decision_from_row(svc: IntakeService, alert: Any, intake: Any) -> Decision | None:
    """Rebuild an undecided :class:`Decision` from its stored rows (restart)."""
    rule = next((r for r in svc.rules.rules if r.name == intake.rule), None)
    if rule is None:
        return None
    norm = NormalizedAlert(source=alert.source, rule_id=alert.rule_id, severity=alert.severity, host=alert.host or "",
                           user=alert.user, source_ip=alert.source_ip, raw=alert.raw or {})
    return Decision(alert_id=alert.id, alert=norm, digest=alert.digest, received_at=alert.received_at,
                    disposition="accepted", incident=alert.incident_id, new_incident=True, rule=rule,
                    target=intake.target, raw=alert.raw or {}, started=time.monotonic())
