"""The daemon's scheduler (APScheduler 3.x): TTL releases, drift re-verification, approval expiry, retries.

Persistent jobs live in APScheduler's SQLAlchemy job store on the agent's own database (table
``scheduler_jobs``), so they survive restarts and crashes:

================================  ==============================  ============================================
job id                            when                            does
================================  ==============================  ============================================
``ttl:<action id>``               the action's ``expires_at``     undo that action (from its snapshot), verify
``ttl-warn:<action id>``          15 min (at most half the TTL)   ``ttl.release_due`` audited (notifications)
                                  before ``expires_at``
``approval-expiry:<approval id>`` the approval's ``expires_at``   pending → expired (audited)
``recheck:<action id>``           ``retry_interval`` × 2^(n-1),   an action *in doubt*: verify first (through
                                  at most 1 h (backoff)           the ActionRunner); in effect → done, else
                                                                  applied once from the *journaled* snapshot —
                                                                  never re-snapshotted; unreadable → again
                                                                  later. At a worker site the site's workers
                                                                  do it, asked by this job (a ``settle``
                                                                  read, agent/workers/settle.py; no target
                                                                  lock held while waiting); a site nobody
                                                                  answers for is audited and asked again.
                                                                  An action that *failed* transiently
                                                                  (nothing was sent) is planned afresh, at
                                                                  most ``retry_attempts`` times.
================================  ==============================  ============================================

"failed" means the change did not reach the target (see :mod:`agent.lifecycle`), so planning it afresh takes a
snapshot of an unchanged target; anything that may have reached the target is ``in_doubt`` and is only ever
re-verified and completed from its own snapshot (re-planning it would snapshot the already-changed state, and a
later undo would restore the wrong thing).

Job ids are derived from the object they concern and added with ``replace_existing``, so a job is never
duplicated. ``misfire_grace_time=None`` and ``coalesce=True``: a job missed while the daemon was down runs
exactly once at the next start. Each job is idempotent against the journal (a release re-reads the action and
does nothing if it is already undone), so even a job re-created by the sweep cannot act twice.

Periodic jobs (re-created at every start, in memory): ``reverify`` every ``daemon.reverify_interval`` verifies
each active containment on its target — drift (someone removed it) is audited and, with
``drift_policy: reapply``, applied again in place from the action's journaled snapshot — never a new one: the
target is still partly changed by that action, see :meth:`agent.lifecycle.ActionRunner.reapply`; ``sweep``
every ``daemon.sweep_interval`` creates missing TTL jobs (e.g. for ``agent contain --ttl`` run by hand) and
expires overdue approvals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from agent.drift import active_action, reverify_active
from agent.store import Action, Approval, utcnow

if TYPE_CHECKING:  # the service passes itself in; importing it here would be a cycle
    from agent.intake.service import IntakeService

__all__ = [
    "DaemonScheduler",
    "expire_approval",
    "recheck_action",
    "recheck_delay",
    "release_action",
    "reverify_all",
    "sweep",
]

_RUNTIME: IntakeService | None = None  # the running service (jobs are module functions the job store can name)
_BOUND = threading.local()  # .svc: the service of the scheduler whose executor thread runs the job
JOBS_TABLE = "scheduler_jobs"


def _svc() -> Any:
    # A job runs on its own scheduler's executor thread, bound to that scheduler's service: two daemons in one
    # process (tests of leadership) each run their jobs with their own service, not the last one started.
    svc = getattr(_BOUND, "svc", None) or _RUNTIME
    if svc is None:
        raise RuntimeError("no daemon is running in this process")
    return svc


def _bind(svc: IntakeService) -> None:
    _BOUND.svc = svc


class DaemonScheduler:
    def __init__(self, svc: IntakeService) -> None:
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler
        self.svc = svc
        #: asked before each job runs; False skips it (leadership lost: see agent.leader). The journal keeps
        #: what a skipped job was for, and the next leader's sweep schedules it again.
        self.guard: Callable[[], bool] = lambda: True
        self.leading = False  # running jobs (leader) or only storing them (paused follower); /healthz shows it
        self._jobs = SQLAlchemyJobStore(engine=svc.store.engine, tablename=JOBS_TABLE)
        self.sched = BackgroundScheduler(
            jobstores={"default": self._jobs,
                       "periodic": MemoryJobStore()},
            executors={"default": _guarded_executor(self, svc)},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC)

    def start(self, *, paused: bool = False) -> None:
        """Start; ``paused`` (a daemon that is not leader): jobs added are written to the shared job store but
        nothing runs until :meth:`resume`."""
        global _RUNTIME  # noqa: PLW0603 - jobs are module functions (the job store names them) and need the service
        _RUNTIME = self.svc
        cfg = self.svc.config
        _create_job_table(self._jobs)
        self.sched.start(paused=paused)
        self.sched.add_job(sweep, "interval", seconds=cfg.sweep_interval.total_seconds(), id="sweep",
                           jobstore="periodic", replace_existing=True, next_run_time=utcnow())
        self.sched.add_job(reverify_all, "interval", seconds=cfg.reverify_interval.total_seconds(),
                           id="reverify", jobstore="periodic", replace_existing=True)

    def resume(self) -> None:
        """Leader now: run due jobs (the sweep first, as at a start) and keep running them."""
        self.leading = True
        if self.sched.running:
            self.sched.resume()

    def pause(self) -> None:
        """No longer leader: run nothing more (a job already running finishes; the journal orders its steps)."""
        self.leading = False
        if self.sched.running:
            self.sched.pause()

    def wakeup(self) -> None:
        """Look at the shared job store now: another daemon may have added a job due sooner than we knew."""
        if self.sched.running:
            self.sched.wakeup()

    def shutdown(self) -> None:
        global _RUNTIME  # noqa: PLW0603 - see start()
        if self.sched.running:
            self.sched.shutdown(wait=True)
        if _RUNTIME is self.svc:
            _RUNTIME = None

    def _add(self, func: Any, job_id: str, when: datetime, args: list[Any]) -> None:
        self.sched.add_job(func, "date", run_date=max(when, utcnow()), id=job_id, args=args,
                           replace_existing=True)

    def schedule_release(self, action_id: str, when: datetime, *, warn: bool = True) -> None:
        self._add(release_action, f"ttl:{action_id}", when, [action_id])
        lead = min(TTL_WARNING, (when - utcnow()) / 2)
        if warn and lead >= timedelta(seconds=5):  # people hear of an automatic release before it happens
            self._add(warn_release, f"ttl-warn:{action_id}", when - lead, [action_id])

    def schedule_approval_expiry(self, approval_id: str, when: datetime) -> None:
        self._add(expire_approval, f"approval-expiry:{approval_id}", when, [approval_id])

    def schedule_recheck(self, action_id: str, attempt: int, when: datetime) -> None:
        self._add(recheck_action, f"recheck:{action_id}", when, [action_id, attempt])

    def job_ids(self) -> list[str]:
        return sorted(j.id for j in self.sched.get_jobs())


def _create_job_table(jobs: Any) -> None:
    """Create APScheduler's job table once, under a PostgreSQL advisory lock, before the scheduler starts.

    Why: the job store creates it as it starts with ``Table.create(checkfirst=True)`` — look, then create — so two
    daemons started together on a new journal can both look first, and the second CREATE fails (UniqueViolation
    on ``pg_type``): one of them died at start. Under the lock the second finds the table made. SQLite (one
    daemon) needs nothing."""
    engine = jobs.engine
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(7781004)"))  # 7781001-3: seq, audit drain, site reads
        jobs.jobs_t.create(conn, checkfirst=True)


def _guarded_executor(owner: DaemonScheduler, svc: IntakeService) -> Any:
    """A 4-thread pool whose threads are bound to ``svc`` and which skips jobs ``owner.guard`` refuses."""
    from apscheduler.executors.pool import ThreadPoolExecutor

    class Guarded(ThreadPoolExecutor):  # type: ignore[misc]
        def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
            if not owner.guard():
                self._run_job_success(job.id, [])  # releases the instance count; nothing ran
                return
            super()._do_submit_job(job, run_times)

    return Guarded(4, pool_kwargs={"initializer": _bind, "initargs": (svc,)})


def _timed(name: str, started: float) -> None:
    svc = getattr(_BOUND, "svc", None) or _RUNTIME
    if svc is not None:
        svc.metrics.job_latency.labels(name).observe(time.monotonic() - started)


# -- jobs ------------------------------------------------------------------------------------------------------
TTL_WARNING = timedelta(minutes=15)  # how long before a TTL release the audit log (and so people) hear of it


def warn_release(action_id: str) -> None:
    """A TTL release is coming: audited as ``ttl.release_due`` (notifications tell people), if still active."""
    svc = _svc()
    row = active_action(svc, action_id)
    if row is None or row.expires_at is None:
        return
    svc.audit.record("ttl.release_due", action_id=action_id, incident=row.incident_id, target=row.target,
                     action=row.action, expires_at=row.expires_at.isoformat())


def release_action(action_id: str) -> None:
    """TTL reached: undo one applied action from its journaled snapshot (no-op if already undone)."""
    started = time.monotonic()
    svc = _svc()
    with svc.store.session() as s:
        peek = s.get(Action, action_id)
    if peek is None:
        return
    with svc.runner.locked([peek.target]):
        row = active_action(svc, action_id)
        if row is None and _mid_way(svc, action_id):
            return
        if row is None:
            svc.audit.record("ttl.skipped", action_id=action_id, incident=peek.incident_id,
                             detail="already undone or no longer active")
            return
        plan = svc.app.planner().build_undo([row], "ttl-release")
        when = row.expires_at.isoformat() if row.expires_at else "?"
        result = svc.runner.run(plan, row.incident_id, reason=f"TTL expired at {when} (automatic release)")
    if result.status != "done":
        svc.audit.record("ttl.release_failed", action_id=action_id, incident=row.incident_id,
                         detail="; ".join(o.summary for o in result.outcomes))
        svc.scheduler.schedule_release(action_id, utcnow() + svc.config.retry_interval, warn=False)
    else:
        _forget_if_released(svc, row.incident_id)
    _timed("ttl", started)


def _mid_way(svc: IntakeService, action_id: str) -> bool:
    """An applied, not undone action a site's worker is changing right now (a drift re-apply, a reconciliation:
    ``applying``/``verifying`` under its gate, agent/workers/gate.py): its TTL release is tried again after
    ``retry_interval`` rather than dropped — the drift check holds no target lock that would have made it wait."""
    from agent.store import ACTIVE_STATES
    with svc.store.session() as s:
        row = s.get(Action, action_id)
    if row is None or row.kind != "apply" or row.undone_at is not None or row.state not in ACTIVE_STATES \
            or row.expires_at is None or row.site is None:
        return False
    svc.audit.record("ttl.deferred", action_id=action_id, incident=row.incident_id, target=row.target,
                     detail=f"{row.state} at site {row.site} (held by {row.owner or 'a worker'}): released after it")
    svc.scheduler.schedule_release(action_id, utcnow() + svc.config.retry_interval, warn=False)
    return True


def _forget_if_released(svc: IntakeService, incident: str) -> None:
    from agent.store import Incident
    with svc.store.session() as s:
        inc = s.get(Incident, incident)
    if inc is not None and inc.status == "released":
        svc.dispatcher.forget(incident)


def expire_approval(approval_id: str) -> None:
    from agent.approvals import expire_due
    svc = _svc()
    with svc.store.session() as s:
        row = s.get(Approval, approval_id)
    if row is not None and row.status == "pending":
        expire_due(svc.store, svc.audit)
        svc.dispatcher.forget(row.incident_id)  # an expired approval holds no dedupe claim


MAX_RECHECK_DELAY = timedelta(hours=1)


def recheck_delay(interval: timedelta, attempt: int) -> timedelta:
    """Backoff for re-verifying an action in doubt: ``interval`` doubled per attempt, at most an hour."""
    delay: timedelta = min(interval * 2 ** max(0, attempt - 1), MAX_RECHECK_DELAY)
    return delay


def recheck_action(action_id: str, attempt: int) -> None:
    """Settle an action in doubt (verify first), or plan a transiently failed one afresh."""
    started = time.monotonic()
    svc = _svc()
    with svc.store.session() as s:
        row = s.get(Action, action_id)
    if row is None or row.undone_at is not None:
        return
    if row.state == "in_doubt" and _at_worker_site(svc, row):
        from agent.workers.settle import recheck_at_site
        recheck_at_site(svc, row, attempt)  # the site's workers settle it; no target lock held while waiting
    elif row.state == "in_doubt":
        _recheck_in_doubt(svc, row, attempt)
    elif row.state == "failed":
        _retry_failed(svc, row, attempt)
    _timed("recheck", started)


def _at_worker_site(svc: IntakeService, row: Action) -> bool:
    """Routed to its site's workers (as the engine routes its actions): only they settle it — they reach the
    target and hold its credentials, and their claim on the action is the one gate (agent/workers/settle.py)."""
    cfg = svc.app.settings.workers
    return cfg is not None and cfg.routes(row.site)


def _recheck_in_doubt(svc: IntakeService, row: Action, attempt: int) -> None:
    from agent.reconcile import resolve_one
    with svc.runner.locked([row.target]):
        with svc.store.session() as s:
            fresh = s.get(Action, row.id)
        if fresh is None or fresh.state != "in_doubt" or fresh.undone_at is not None:
            return
        out = resolve_one(svc.engine, fresh)
    svc.audit.record("recheck.done", action_id=row.id, incident=row.incident_id, attempt=attempt,
                     outcome=out.outcome, detail=out.detail)
    if out.outcome in ("in_doubt", "pending"):
        svc.scheduler.schedule_recheck(row.id, attempt + 1,
                                       utcnow() + recheck_delay(svc.config.retry_interval, attempt + 1))
    elif out.outcome == "done":
        with svc.store.session() as s:
            done = s.get(Action, row.id)
        if done is not None:
            schedule_ttl_if_due(svc, done)


def schedule_ttl_if_due(svc: IntakeService, row: Action) -> None:
    """An in-doubt action just settled done (here, or by a site's workers: agent/workers/settle.py): if it is
    an applied containment with a TTL and not undone, its release is scheduled as for any other."""
    if row.state == "done" and row.kind == "apply" and row.expires_at is not None and row.undone_at is None:
        svc.scheduler.schedule_release(row.id, row.expires_at)


def _retry_failed(svc: IntakeService, row: Action, attempt: int) -> None:
    """A transient failure before anything was sent: plan it afresh (the target is unchanged)."""
    from agent.errors import AgentError
    from agent.replan import replan
    with svc.store.session() as s:
        later = s.scalar(select(Action.id).where(Action.incident_id == row.incident_id, Action.target == row.target,
                                                 Action.action == row.action, Action.kind == "apply",
                                                 Action.state.in_(("done", "in_doubt")),
                                                 Action.seq > row.seq).limit(1))
    if later is not None:
        return
    try:
        plan = replan(svc.app.planner(), row)
    except AgentError as exc:
        svc.audit.record("retry.refused", action_id=row.id, incident=row.incident_id, error=str(exc))
        return
    ttl = (row.expires_at - row.created_at) if row.expires_at else None
    svc.audit.record("retry.start", action_id=row.id, incident=row.incident_id, attempt=attempt,
                     target=row.target, action=row.action, previous_error=row.error)
    svc.runner.run(plan, row.incident_id, reason=f"retry {attempt} after a transient failure: {row.error}",
                   ttl=ttl, approved_by=row.approved_by, retry_attempt=attempt)


def reverify_all() -> None:
    """Verify every active containment; drift is audited and re-applied or alerted per policy (agent.drift)."""
    started = time.monotonic()
    if reverify_active(_svc()):
        _timed("reverify", started)


def sweep() -> None:
    """Create missing TTL jobs for active actions and expire overdue approvals."""
    from agent.approvals import expire_due
    svc = _svc()
    if svc.scheduler is None:
        return
    ids = set(svc.scheduler.job_ids())
    with svc.store.session() as s:
        rows = list(s.scalars(select(Action).where(Action.kind == "apply", Action.state == "done",
                                                   Action.undone_at.is_(None), Action.changed == 1,
                                                   Action.expires_at.is_not(None))))
    for row in rows:
        if f"ttl:{row.id}" not in ids and row.expires_at is not None:
            svc.scheduler.schedule_release(row.id, row.expires_at)
    with svc.store.session() as s:  # in doubt after a CLI run (or before a restart): re-verify it here too
        doubtful = list(s.scalars(select(Action.id).where(Action.state == "in_doubt", Action.undone_at.is_(None))))
    for action_id in doubtful:
        if f"recheck:{action_id}" not in ids:
            svc.scheduler.schedule_recheck(action_id, 1, utcnow() + svc.config.retry_interval)
    expire_due(svc.store, svc.audit)
