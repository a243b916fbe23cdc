"""The engine: executes a :class:`~agent.plan.Plan` as journaled, verified, reversible actions.

Per action: ``intent → snapshotted → applying → verifying → done | failed | in_doubt``; each transition is
committed (store + audit) before the next step, so a crash leaves a journal that reconciliation
(:mod:`agent.reconcile`) finishes on the next start by reading the target's real state — never applying twice.
The lifecycle of one action (sessions, retries, error mapping, read-back after failures, transitions) lives in
:class:`agent.lifecycle.ActionRunner`; this module orders actions: plans run in phases (a batch between the
steps before and after it), subjects in parallel (thread pool), steps of one subject in order on sessions opened
once per target, a failed step stops or rolls back its subject as the runbook says. A failure on one subject
never escapes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.config import Settings
from agent.inventory import Inventory
from agent.items import item_rows
from agent.journal import AuditSink, Journal
from agent.lifecycle import ActionRunner
from agent.outcomes import IN_DOUBT, ActionOutcome, Interrupted
from agent.sessions import SessionCache
from agent.plan import Plan, PlannedAction
from agent.registry import Registry
from agent.store import Action, Store, utcnow
from connectors.types import ConnectorContext

if TYPE_CHECKING:
    from agent.workers.dispatch import SiteDispatcher

__all__ = ["ActionOutcome", "Engine", "Interrupted", "RunResult"]


@dataclass
class RunResult:
    incident: str
    outcomes: list[ActionOutcome] = field(default_factory=list)
    interrupted: bool = False

    def failed_subjects(self) -> set[str]:
        """Subjects not verified done: a failed action's, and a batch's items that failed or are in doubt."""
        return self._subjects()[1]

    def _subjects(self) -> tuple[set[str], set[str]]:
        every: set[str] = set()
        failed: set[str] = set()
        for o in self.outcomes:
            if o.items:
                for item in o.items:
                    every.add(item["requested"])
                    if item["state"] in ("failed", "in_doubt", "intent") or o.state in ("failed", "in_doubt"):
                        failed.add(item["requested"])
                continue
            every.add(o.subject)
            if o.state in ("failed", "in_doubt"):
                failed.add(o.subject)
        return every, failed

    def in_doubt(self) -> list[ActionOutcome]:
        """Outcomes with an action or an item in doubt (a change may be on the target, not verified)."""
        return [o for o in self.outcomes if o.state == IN_DOUBT or any(i["state"] == IN_DOUBT for i in o.items)]

    @property
    def status(self) -> str:
        """``done`` | ``partial`` | ``failed`` | ``refused`` | ``interrupted`` (drives the CLI exit code).

        Anything in doubt makes the run ``partial`` (exit 4), never ``failed``: it may be in effect.
        """
        if self.interrupted:
            return "interrupted"
        if self.in_doubt():
            return "partial"
        failed = self.failed_subjects()
        if not failed:
            return "done"
        every = self._subjects()[0]
        kinds = {o.error_kind for o in self.outcomes if o.state == "failed"}
        if kinds <= {"host_key", "invalid_input"} and len(failed) == len(every) and all(
                o.state == "failed" for o in self.outcomes if o.items):
            return "refused"
        ok = every - failed
        return "partial" if ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"incident": self.incident, "status": self.status,
                "outcomes": [o.to_dict() for o in self.outcomes]}


class Engine:
    def __init__(self, settings: Settings, inventory: Inventory, store: Store, audit: AuditSink,
                 registry: Registry, ctx: ConnectorContext, *, actor: str,
                 evidence_sink: Callable[[str, str, dict[str, Any], dict[str, str]], list[dict[str, Any]]]
                 | None = None,
                 on_event: Callable[[str, ActionOutcome | PlannedAction], None] | None = None) -> None:
        self.settings, self.inventory, self.store, self.audit = settings, inventory, store, audit
        self.registry, self.ctx, self.actor = registry, ctx, actor
        self.journal = Journal(store, audit)
        self.evidence_sink = evidence_sink
        self.on_event = on_event or (lambda kind, obj: None)
        self.cancel = threading.Event()
        self.runner = ActionRunner(settings, registry, ctx, self.journal, cancel=self.cancel,
                                   evidence_sink=evidence_sink)
        self.dispatcher: SiteDispatcher | None = None  # per-site workers (agent/workers): set when configured
        if settings.workers is not None and settings.workers.sites:
            from agent.workers.dispatch import SiteDispatcher
            self.dispatcher = SiteDispatcher(settings.workers, self.journal, self.cancel)

    # -- public ---------------------------------------------------------------------------------------------
    def execute(self, plan: Plan, incident: str, *, reason: str = "", ttl: timedelta | None = None,
                approved_by: str | None = None) -> RunResult:
        """Run every subject of ``plan``; returns one outcome per action. Ctrl-C sets :attr:`cancel`."""
        if self.dispatcher is not None and any(self.dispatcher.handles(pa) for pa in plan.actions):
            self.dispatcher.warm()  # the broker connection, while the plan is audited and scoped
        self.audit.record("plan.created", incident=incident, runbook=plan.runbook.name, params=plan.params,
                          subjects=plan.subjects, actions=plan.to_dict()["actions"], notes=plan.notes,
                          requested_by=self.actor, reason=reason)
        self._snapshot_scope(plan, incident)
        result = RunResult(incident=incident)
        stopped: set[str] = set()  # subjects a stopping step failed for: their later phases do not run
        phases = plan.phases()
        applied: list[tuple[PlannedAction, ActionOutcome]] = []  # done applies of earlier phases, in order
        for phase in phases:
            todo = [pa for pa in phase if pa.batched or pa.subject not in stopped]
            for pa in phase:
                if pa not in todo:
                    result.outcomes.append(ActionOutcome(
                        subject=pa.subject, step=pa.step.id, target=pa.target.name, action=pa.action,
                        kind="undo" if pa.undo_of else "apply", state="skipped",
                        summary="not run: an earlier step failed for this subject"))
            outcomes = self._run_phase(plan, todo, incident, reason, ttl, approved_by, result)
            newly = _stopped_subjects(plan, outcomes) - stopped
            stopped |= newly
            if newly and applied and plan.runbook.rollback == "reverse" and not self.cancel.is_set():
                self._rollback_earlier(plan, newly, applied, incident, result)
            by_id = {pa.action_id: pa for pa in todo}
            applied.extend((by_id[o.action_id], o) for o in outcomes
                           if o.state == "done" and o.kind == "apply" and o.action_id in by_id)
        self.update_incident_status(incident)
        return result

    def _rollback_earlier(self, plan: Plan, subjects: set[str], applied: list[tuple[PlannedAction, ActionOutcome]],
                          incident: str, result: RunResult) -> None:
        """Undo, newest first, what earlier phases did for ``subjects`` (a step failed for them and the runbook
        rolls back): their own actions, and their items of a batch — the batch's other items stay applied."""
        from agent.batching import active_items, undo_actions
        from agent.plan import Planner
        planner = Planner(self.settings, self.inventory, self.registry, self.store, self.ctx)
        undos: list[PlannedAction] = []
        for pa, outcome in reversed(applied):
            if not pa.spec.reversible or not pa.spec.mutating or not outcome.action_id:
                continue
            if not pa.batched and pa.subject not in subjects:
                continue
            found = active_items(self.store, action_ids=[outcome.action_id])
            for action_id, (row, items) in found.items():
                mine = [i for i in items if i.requested in subjects] if pa.batched else items
                if mine:
                    undos.extend(undo_actions(planner, {action_id: (row, mine)},
                                              subject=None if pa.batched else pa.subject))
        if undos:
            self._run_phase(plan, undos, incident, "rollback after a failed step", None, None, result)

    def _run_phase(self, plan: Plan, actions: list[PlannedAction], incident: str, reason: str,
                   ttl: timedelta | None, approved_by: str | None, result: RunResult) -> list[ActionOutcome]:
        """Each subject's actions in order, subjects in parallel (a batched action is a subject of its own)."""
        groups: dict[str, list[PlannedAction]] = {}
        for pa in actions:
            groups.setdefault(pa.action_id if pa.batched else pa.subject, []).append(pa)
        lock = threading.Lock()
        mine: list[ActionOutcome] = []

        def run_subject(key: str) -> None:
            outcomes = self._run_subject(plan, groups[key][0].subject, groups[key], incident, reason, ttl,
                                         approved_by)
            with lock:
                result.outcomes.extend(outcomes)
                mine.extend(outcomes)

        if not groups:
            return mine
        workers = max(1, min(self._parallel(actions), len(groups)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="contain")
        futures = [pool.submit(run_subject, s) for s in groups]
        try:
            for fut in futures:
                while True:
                    try:
                        fut.result(timeout=0.2)
                        break
                    except TimeoutError:
                        continue
        except KeyboardInterrupt:
            self.cancel.set()
            result.interrupted = True
            self.audit.record("run.interrupted", incident=incident, by=self.actor)
            pool.shutdown(wait=True, cancel_futures=True)
            raise Interrupted(incident) from None
        finally:
            pool.shutdown(wait=True)
        return mine

    def _parallel(self, actions: list[PlannedAction]) -> int:
        """Subjects run at once: ``max_parallel`` here; when every action goes to a site's workers, this process
        only waits on the journal (the workers' slots bound the real parallelism), so up to 256 are in flight."""
        if self.dispatcher is not None and actions and all(self.dispatcher.handles(pa) for pa in actions):
            return max(self.settings.max_parallel, 256)
        return self.settings.max_parallel

    def _snapshot_scope(self, plan: Plan, incident: str) -> None:
        """Record what the touched systems hold (data categories, people per state) as the inventory says now.

        The counsel report reads scope only from these records, so a later inventory edit cannot change it, and
        it counts people once per data set however many actions touch a system (ARCHITECTURE lesson 14).
        """
        from agent.report.scope import snapshot_scope

        self.audit.record("incident.scope", incident=incident, cause="plan", inventory=str(self.inventory.path),
                          organisation=dict(getattr(self.settings, "organisation", {}) or {}),
                          **snapshot_scope(a.entry for a in plan.actions))

    # -- one subject ----------------------------------------------------------------------------------------
    def _run_subject(self, plan: Plan, subject: str, actions: list[PlannedAction], incident: str, reason: str,
                     ttl: timedelta | None, approved_by: str | None) -> list[ActionOutcome]:
        outcomes: list[ActionOutcome] = []
        done_rows: list[tuple[PlannedAction, Action]] = []
        with self._sessions() as sessions:
            for pa in actions:
                if self.cancel.is_set():
                    break
                row = self._new_row(plan, pa, incident, reason, ttl, approved_by)
                self.on_event("start", pa)
                outcome = self._run_action(pa, row, sessions)
                outcomes.append(outcome)
                self.on_event("end", outcome)
                if outcome.state == "done":
                    done_rows.append((pa, row))
                elif pa.step.on_error == "stop":
                    if plan.runbook.rollback == "reverse":
                        outcomes.extend(self._rollback(plan, done_rows, incident, sessions))
                    break
        return outcomes

    def _new_row(self, plan: Plan, pa: PlannedAction, incident: str, reason: str, ttl: timedelta | None,
                 approved_by: str | None) -> Action:
        expires = utcnow() + ttl if (ttl and not pa.undo_of and pa.spec.reversible and pa.spec.mutating) else None
        row = Action(id=pa.action_id, incident_id=incident, runbook=plan.runbook.name, step=pa.step.id,
                     kind="undo" if pa.undo_of else "apply", undo_of=pa.undo_of, target=pa.target.name,
                     subject=pa.subject,
                     target_kind=pa.target.kind, address=pa.target.address, connector=pa.connector,
                     action=pa.action, args=_journal_args(pa.args), reversible=int(pa.spec.reversible),
                     mutating=int(pa.spec.mutating), state="intent", requested_by=self.actor,
                     approved_by=approved_by, reason=reason, expires_at=expires, snapshot=pa.snapshot,
                     site=pa.entry.site if self.dispatcher is not None and self.dispatcher.handles(pa) else None)
        row.items = item_rows(pa.items)
        return self.journal.create(row)

    def _run_action(self, pa: PlannedAction, row: Action, sessions: SessionCache) -> ActionOutcome:
        if self.dispatcher is not None and self.dispatcher.handles(pa):
            out = self.dispatcher.run(pa, row)  # a worker of the target's site runs it with the same runner
        else:
            out = self.runner.run(pa, row, sessions)
        if pa.batched:
            out.items = [{"requested": i.requested, "canonical": i.canonical, "state": i.state,
                          "outcome": i.outcome, **({"error": i.error} if i.error else {})}
                         for i in self.journal.items_of(row.id)]
        return out

    def _rollback(self, plan: Plan, done: list[tuple[PlannedAction, Action]], incident: str,
                  sessions: SessionCache) -> list[ActionOutcome]:
        outcomes = []
        for pa, row in reversed(done):
            if not pa.spec.reversible or not pa.spec.mutating or row.kind == "undo" or not row.changed:
                continue
            undo = PlannedAction(subject=pa.subject, step=pa.step, entry=pa.entry, target=pa.target,
                                 action=pa.action, args=pa.args, spec=pa.spec, undo_of=row.id,
                                 snapshot=row.snapshot)
            undo_row = self._new_row(plan, undo, incident, "rollback after a failed step", None, None)
            outcomes.append(self._run_action(undo, undo_row, sessions))
        return outcomes

    def update_incident_status(self, incident: str) -> None:
        """``contained`` only when every item the incident set out to change is verified in effect; while some
        failed or are in doubt (and no later action of the incident did them) it is ``partial``."""
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload
        with self.store.session() as s:
            every = list(s.scalars(select(Action).where(Action.incident_id == incident, Action.kind == "apply",
                                                        Action.mutating == 1)
                                   .options(selectinload(Action.items)).order_by(Action.seq)))
        rows = [r for r in every if r.state == "done"]
        active = [r for r in rows if r.undone_at is None and r.changed]
        settled: set[tuple[str, str]] = set()
        unsettled: set[tuple[str, str]] = set()
        for r in every:
            for item in r.items:
                key = (r.action, item.canonical)
                if item.state == "done" or item.undone_at is not None:
                    settled.add(key)
                    unsettled.discard(key)
                elif item.state in ("failed", "in_doubt") and key not in settled:
                    unsettled.add(key)
        if active and not unsettled:
            first = min(r.updated_at for r in active)
            self.journal.update_incident(incident, status="contained", **(
                {"contained_at": first} if self._contained_at(incident) is None else {}))
        elif active or (unsettled and any(r.state == "in_doubt" for r in every)):
            self.journal.update_incident(incident, status="partial")
        elif rows:
            self.journal.update_incident(incident, status="released")

    def _contained_at(self, incident: str) -> datetime | None:
        from agent.store import Incident
        with self.store.session() as s:
            inc = s.get(Incident, incident)
            return inc.contained_at if inc else None

    @contextmanager
    def _sessions(self) -> Iterator[SessionCache]:
        cache = self.runner.sessions()
        try:
            yield cache
        finally:
            cache.close_all()


def _stopped_subjects(plan: Plan, outcomes: list[ActionOutcome]) -> set[str]:
    """Subjects a step with ``on_error: stop`` failed for (per item in a batch): later steps skip them."""
    stops = {step.id for step in plan.runbook.steps if step.on_error == "stop"}
    out: set[str] = set()
    for o in outcomes:
        if o.step not in stops:
            continue
        if o.items:
            out.update(i["requested"] for i in o.items if i["state"] != "done" or o.state != "done")
        elif o.state != "done":
            out.add(o.subject)
    return out


def _journal_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k != "protected"}


