"""The intake service: everything between an HTTP request and the dispatcher, without HTTP.

Request path (kept minimal — it is what an alert storm hits): look up the source (404) → check the size (413)
→ authenticate (401) → parse JSON and normalise (400) — :mod:`agent.intake.request`, run in the daemon's HTTP
front process — then here: match a rule and claim the dedupe key (memory) → one group-committed INSERT →
enqueue → answer 202. Every rejection is audited with its reason and never acted on. The rest (planning,
limits, approvals, execution) happens in the dispatcher thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agent.intake.auth import ApiAuth, SourceAuth
from agent.intake.config import DaemonConfig
from agent.intake.ids import incident_id, pool
from agent.intake.dispatcher import Dispatcher
from agent.intake.requeue import requeue_undecided
from agent.intake.limits import BlastRadius, DedupeIndex, dedupe_key
from agent.intake.metrics import Metrics
from agent.intake.model import NormalizedAlert
from agent.intake.request import IntakeRejected, Parsed, Source, find_source, parse_alerts
from agent.intake.rules import HostTags, Rule, RuleSet, load_rules
from agent.intake.writer import AlertWriter, Decision
from agent.store import utcnow

if TYPE_CHECKING:  # the composition root builds this service; importing it at run time would be a cycle
    from agent.app import App

__all__ = ["IntakeRejected", "IntakeService", "dedupe_key"]


class IntakeService:
    def __init__(self, app: App, config: DaemonConfig, *, engine: Any = None, metrics: Metrics | None = None,
                 rules: RuleSet | None = None) -> None:
        from agent.intake.tables import create_tables
        from agent.intake.runner import Runner
        self.app, self.config = app, config
        self.store, self.audit = app.store, app.audit
        create_tables(self.store.engine)
        self.engine = engine or app.engine()
        self.metrics = metrics or Metrics(self.store)
        self.rules = rules if rules is not None else load_rules(app.settings.rules, app.settings.runbooks)
        self.host_tags = HostTags(app.inventory)
        self._rules_by_name = {r.name: r for r in self.rules.rules}
        self.sources = {name: Source(name, src.format, SourceAuth(src)) for name, src in config.sources.items()}
        self.api = ApiAuth(config)
        from agent.intake.rejections import RejectionLog
        self.rejections = RejectionLog(self.audit)
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
        self.dispatcher.preload()
        self.writer.start()
        self.dispatcher.start()
        requeue_undecided(self)

    def stop(self, grace: float | None = None) -> None:
        self.dispatcher.stop()
        self.runner.shutdown(self.config.shutdown_grace.total_seconds() if grace is None else grace)
        # no plan runs any more: scheduler jobs still going (a drift pass waiting on site workers' reads) stop
        # waiting now, so the scheduler's shutdown does not wait out their timeouts
        self.runner.engine.cancel.set()
        self.writer.stop()
        self.rejections.close()

    def _load_state(self) -> None:
        from sqlalchemy import select

        # (connector, action) -> blast-radius category, as the installed connectors declare them
        limited = {(name, spec.name): spec.blast for name, spec in self.app.registry.all_specs() if spec.blast}
        from agent.intake.tables import IntakeIncident
        from agent.store import Action, ActionItem, Incident
        now = utcnow()
        since = now - max(self.config.dedupe_window, self.config.blast_window)
        from agent.intake.claims import live_claims
        with self.store.session() as s:
            # claims held in the database (incidents that act or await approval), and undecided incidents
            # (re-queued below: they claim again when decided)
            claims = live_claims(s.connection(), now - self.config.dedupe_window)
            claims += [(dedupe_key(r[4], r[0]), r[1], r[2], r[3]) for r in s.execute(
                select(IntakeIncident.runbook, IntakeIncident.target, IntakeIncident.incident_id,
                       IntakeIncident.opened_at, IntakeIncident.policy)
                .join(Incident, Incident.id == IntakeIncident.incident_id)
                .where(IntakeIncident.opened_at >= since, IntakeIncident.decision == "queued",
                       Incident.status != "released"))]
            acts = list(s.execute(select(Action.connector, Action.action, Action.target, Action.created_at,
                                         ActionItem.canonical)
                                  .join(ActionItem, ActionItem.action_id == Action.id).where(
                Action.kind == "apply", Action.action.in_({a for _, a in limited}), Action.state != "failed",
                ActionItem.state != "failed", Action.created_at >= since)))
        self.dedupe.load([(r[0], r[1], r[2], r[3]) for r in claims], now)
        # accounts by the items' canonical identity (every account of a batch counts), hosts by name
        rows = [(limited[(conn, action)], target, at, canonical) for conn, action, target, at, canonical in acts
                if (conn, action) in limited]
        self.blast.load([(category, canonical if category == "accounts" else target, at)
                         for category, target, at, canonical in rows], now)

    # -- request path ---------------------------------------------------------------------------------------
    def source_auth(self, name: str) -> SourceAuth:
        return find_source(self.sources, name).auth

    def prepare(self, name: str, headers: Mapping[str, str], body: bytes, started: float,
                query: str = "") -> list[Decision]:
        """Authenticate, parse, normalise and decide dedupe for one request (no I/O; raises IntakeRejected)."""
        return self.decide_all(parse_alerts(find_source(self.sources, name), headers, body, query), started)

    def decide_all(self, parsed: list[Parsed], started: float,
                   routes: list[tuple[str, str] | None] | None = None) -> list[Decision]:
        """Decide every alert of one request (rule, target, dedupe claim); the same arrival time for all.

        ``routes``: ``(rule name, target)`` per alert, or None for no match, when the caller (the HTTP front
        process) already matched the rules; otherwise they are matched here.
        """
        now = utcnow()
        out: list[Decision] = []
        try:
            for i, p in enumerate(parsed):
                if routes is None:
                    routed = self.rules.route(p.alert, self.host_tags)
                else:
                    name_target = routes[i]
                    routed = None if name_target is None else (self._rules_by_name[name_target[0]], name_target[1])
                out.append(self.decide(p.alert, p.digest, now, p.raw, started, routed))
        except BaseException:
            self.unclaim(out)
            raise
        return out

    def decide(self, alert: NormalizedAlert, digest: str, now: Any, raw: dict[str, Any],
               started: float, routed: tuple[Rule, str] | None) -> Decision:
        """One alert's decision: not actionable, no match, or a dedupe claim on (runbook, target)."""
        d = Decision(alert_id=pool.uuid7(), alert=alert, digest=digest, received_at=now,
                     disposition="no-match", raw=raw, started=started)
        if alert.invalid:
            d.disposition = "invalid"
            return d
        if alert.resolved:
            d.disposition = "resolved"  # linked to the firing alert's incident by the dispatcher
            return d
        if not alert.actionable:
            d.disposition = "not-actionable"
            return d
        if routed is None:
            return d
        rule, target = routed
        d.rule, d.target = rule, target
        incident, new = self.dedupe.claim((dedupe_key(rule.policy, rule.runbook), target), self._incident_id(now), now)
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
                candidate = incident_id(now)
                if candidate not in self._ids_used:
                    self._ids_used.add(candidate)
                    return candidate

    def unclaim(self, decisions: list[Decision]) -> None:
        """The write failed: give the dedupe keys back so a retried request is not wrongly deduped."""
        for d in decisions:
            if d.new_incident and d.rule is not None and d.target and d.incident:
                self.dedupe.release((dedupe_key(d.rule.policy, d.rule.runbook), d.target), d.incident)

    def count(self, requests: Iterable[list[Decision]]) -> None:
        """Metrics for stored requests: counters added once per source, latency observed per request."""
        received: Counter[str] = Counter()
        deduped: Counter[str] = Counter()
        now = time.monotonic()
        for decisions in requests:
            for d in decisions:
                received[d.alert.source] += 1
                if d.disposition == "deduped":
                    deduped[d.alert.source] += 1
            if decisions:
                self.metrics.intake_latency.observe(now - decisions[0].started)
        for source, n in received.items():
            self.metrics.received.labels(source).inc(n)
        for source, n in deduped.items():
            self.metrics.deduped.labels(source).inc(n)

    def reject(self, name: str, exc: IntakeRejected, client: str, size: int) -> None:
        known = name if name in self.sources else "(unknown)"
        self.metrics.rejected.labels(known, exc.code).inc()
        self.rejections.reject(name[:80] if known != "(unknown)" else "(unknown)", exc.status, exc.code, exc.reason,
                               client, size)


