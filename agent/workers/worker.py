"""``agent worker --site S``: consume site S's queue and run each action with the same ActionRunner as ever.

The worker runs next to its site's targets with its own ``agent.yaml``: the shared PostgreSQL journal, the
broker, and an inventory that holds the site's credentials (the central daemon's need not). For each delivery:

1. **claim** the action in the journal (:func:`agent.workers.lease.claim`, a compare-and-swap) — before anything
   touches the target. A delivery whose action is settled, or held by a live worker (a redelivery while it
   runs), is dropped: that is how at-least-once delivery becomes an exactly-once effect.
2. a fresh claim **runs** the action (:meth:`agent.lifecycle.ActionRunner.run`: snapshot, apply, verify, each
   transition committed before the next); a claim taken over from a worker whose lease expired **reconciles**
   it (:meth:`ActionRunner.resolve`: read the target's real state first; in effect → done, never applied twice;
   absent → applied once from the journaled snapshot).
3. while it runs, a heartbeat renews the lease; every transition is **fenced** (the row is locked and must still
   be ours), so a worker that lost its lease cannot overwrite its successor's record.

A sweeper takes over, within one lease, the actions of this site whose worker died (lease expired) even when no
message comes back for them, and actions journaled but never published (the engine died in between) once they
are older than ``workers.wait``. See docs/workers.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent.audit.outbox import OutboxAudit
from agent.errors import AgentError, ConfigError
from agent.failpoints import failpoint
from agent.journal import Journal, JournalUnavailable
from agent.lifecycle import ActionRunner
from agent.outcomes import IN_DOUBT
from agent.plan import PlannedAction
from agent.runbook import Step
from agent.store import ACTIVE_STATES, Action
from agent.workers import gate
from agent.workers.lease import Claim, ClaimResult, Heartbeat, LeaseLost, claim, db_now

if TYPE_CHECKING:
    from agent.app import App
    from agent.engine import Engine
    from agent.journal import AuditSink
    from agent.store import Store

__all__ = ["FencedJournal", "SiteWorker", "serve"]


class FencedJournal(Journal):
    """The worker's journal: each transition locks the row, checks the lease is still ours and extends it."""

    fenced = True

    def __init__(self, store: Store, audit: AuditSink, lease: float) -> None:
        super().__init__(store, audit)
        self.lease = lease

    def fence(self, s: Any, db: Action) -> None:
        if db.owner != self.owner:
            raise LeaseLost(f"action {db.id} is now claimed by {db.owner}; this worker ({self.owner}) stops")
        db.lease_until = db_now(s) + timedelta(seconds=self.lease)


class SiteWorker:
    """Claims and runs one site's actions (the body of the Celery task, and the sweeper)."""

    def __init__(self, app: App, site: str) -> None:
        cfg = app.settings.workers
        if cfg is None:
            raise ConfigError("agent worker needs a workers: section in agent.yaml (broker, lease)", field="workers")
        if app.store.engine.dialect.name != "postgresql":
            raise ConfigError("agent worker needs the shared PostgreSQL journal (database: postgresql+psycopg://…); "
                              f"this configuration uses {app.store.engine.dialect.name}", field="database")
        self.app, self.site, self.cfg = app, site, cfg
        self.journal = FencedJournal(app.store, app.audit, cfg.lease)
        self.owner = self.journal.owner
        stamp = getattr(app.audit, "stamp", None)
        if stamp is not None:  # every record this worker queues for the deployment's chain names it
            stamp(site=site, worker=self.owner)
        self.runner = ActionRunner(app.settings, app.registry, app.ctx, self.journal,
                                   evidence_sink=app._store_evidence)
        self.planner = app.planner()
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._running: set[str] = set()  # actions a thread of this process runs now
        self._claims = 0  # actions this process claimed (fresh or taken over), for the failpoint
        self.stopping = threading.Event()
        from agent.workers.reader import SiteReader
        self.reader = SiteReader(self)  # read-backs, drift re-applies and resolve steps asked by other processes
        self.reverify_interval = 10 * max(1.0, cfg.lease / 2)  # the sweep reads back every 10 rounds

    # -- one delivery -------------------------------------------------------------------------------------------
    def execute(self, action_id: str, args: dict[str, Any]) -> str:
        """Claim ``action_id`` and run (or take over) it; returns what happened, for the log."""
        got = self._claim(action_id)
        if got.result not in (ClaimResult.FRESH, ClaimResult.TAKEOVER):
            row = got.row
            self.app.audit.record("worker.dropped", action_id=action_id, site=self.site, worker=self.owner,
                                  reason=got.result.value, holder=got.previous_owner or None,
                                  state=row.state if row is not None else None,
                                  incident=row.incident_id if row is not None else None)
            return str(got.result.value)
        return self._run(got, args)

    def _claim(self, action_id: str, *, in_doubt: bool = False, orphan: bool = False) -> Claim:
        """Claim unless this process already runs the action: the lease names the process, so a thread of it
        whose lease lapsed (the journal was away) and came back must not be "taken over" by its own sweeper.
        ``orphan``: journaled but never published — reconciled like a takeover even when nobody claimed it."""
        with self._lock:
            if action_id in self._running:
                return Claim(ClaimResult.HELD, None, self.owner)
            got = claim(self.app.store, action_id, self.owner, self.cfg.lease, site=self.site, in_doubt=in_doubt,
                        on_claimed=lambda s, won: self._note_claim(s, won, orphan=orphan))
            if got.result in (ClaimResult.FRESH, ClaimResult.TAKEOVER):
                self._running.add(action_id)
                self._claims += 1
                failpoint("worker-after-claim")
                failpoint(f"worker-after-claim:{self._claims}")  # the K-th action this process claimed
                if orphan:
                    got = Claim(ClaimResult.TAKEOVER, got.row, got.previous_owner)
            return got

    def _note_claim(self, s: Session, won: Claim, *, orphan: bool) -> None:
        """``worker.claimed``, queued in the claim's own transaction (:func:`claim`'s ``on_claimed``)."""
        row = won.row
        assert row is not None
        audit = self.app.audit
        fields = dict(incident=row.incident_id, action_id=row.id, target=row.target, action=row.action,
                      kind=row.kind, site=self.site, worker=self.owner,
                      takeover=orphan or won.result is ClaimResult.TAKEOVER,
                      previous_owner=won.previous_owner or None, state=row.state)
        if isinstance(audit, OutboxAudit):
            with audit.bound(s):
                audit.record("worker.claimed", **fields)
        else:  # a chain writer's own file log is not part of the database transaction
            audit.record("worker.claimed", **fields)

    def _run(self, got: Claim, args: dict[str, Any]) -> str:
        row = got.row
        assert row is not None
        try:
            return self._run_claimed(got, row, args)
        finally:
            if row.state == IN_DOUBT:
                self._let_go(row.id)
            elif row.kind == "apply":  # done: its gate opens at once (an undo need not wait for the lease to lapse)
                with contextlib.suppress(Exception):
                    gate.release(self.app.store, row.id, self.owner, only=("done",))
            self.unclaim(row.id)

    def claim_here(self, action_id: str) -> bool:
        """Mark ``action_id`` as worked on by a thread of this process (False: one already is). The lease names
        the process, not the thread, so two threads of one worker tell each other apart only here."""
        with self._lock:
            if action_id in self._running:
                return False
            self._running.add(action_id)
            return True

    def unclaim(self, action_id: str) -> None:
        with self._lock:
            self._running.discard(action_id)

    def _let_go(self, action_id: str) -> None:
        """End this worker's lease on an action its run left in doubt: nobody is working on it any more, so the
        daemon's next re-check (agent/workers/settle.py) or a sweep may claim it at once, not one lease later."""
        try:
            with self.app.store.session() as s:
                s.execute(update(Action).where(Action.id == action_id, Action.owner == self.owner,
                                               Action.state == IN_DOUBT).values(lease_until=None))
        except Exception:  # noqa: BLE001, S110 - the journal is away: the lease lapses by itself
            pass

    def _run_claimed(self, got: Claim, row: Action, args: dict[str, Any]) -> str:
        with Heartbeat(self.app.store, row.id, self.owner, self.cfg.lease):
            if row.kind != "undo" or not row.undo_of or not row.mutating:
                return self._run_held(got, row, args)
            try:  # an undo: only through the gate of the action it undoes (agent/workers/gate.py)
                with gate.wait_for(self.app.store, row.undo_of, self.owner, self.cfg.lease,
                                   within=self._gate_wait(), stopping=self.stopping, claim=self.claim_here,
                                   unclaim=self.unclaim, on_wait=lambda holder: self.app.audit.record(
                                       "worker.gate_wait", incident=row.incident_id, action_id=row.id,
                                       undo_of=row.undo_of, target=row.target, site=self.site, worker=self.owner,
                                       holder=holder)):
                    return self._run_held(got, row, args)
            except gate.GateWait as exc:
                return self._gate_refused(row, exc.holder)

    def _gate_wait(self) -> float:
        """How long an undo waits for the gate: a re-apply's connect and command timeouts per attempt, and a lease
        for the lease of one that died to lapse (twice: it may have just been renewed)."""
        s = self.app.settings
        return (s.connect_timeout + s.command_timeout) * max(1, s.retries) + 2 * self.cfg.lease

    def _gate_refused(self, row: Action, holder: str) -> str:
        """The gate stayed held: a fresh undo is failed, nothing sent (the TTL release or the person retries);
        one taken over mid-way is left to lapse — the site's sweep takes it over again."""
        self.app.audit.record("worker.gate_busy", incident=row.incident_id, action_id=row.id, undo_of=row.undo_of,
                              target=row.target, site=self.site, worker=self.owner, holder=holder)
        if row.state != "intent":
            return "deferred"
        message = (f"not released: {row.action} on {row.target} stayed held by {holder} (a drift re-apply or a "
                   "reconciliation of it) while this worker waited; nothing was sent — release it again")
        self.journal.transition(row, "failed", message, error=message, error_kind="busy")
        return "failed"

    def _run_held(self, got: Claim, row: Action, args: dict[str, Any]) -> str:
        takeover = got.result is ClaimResult.TAKEOVER
        try:
            entry = self.planner.entry_for(row)
            if entry.site != self.site:
                raise ConfigError(f"{row.target} is at site {entry.site or 'none'} in this worker's inventory, "
                                  f"not {self.site}: not acting on it", field="site")
            if takeover and row.mutating:
                res = self.runner.resolve(row, entry)
                self.engine().update_incident_status(row.incident_id)
                return f"takeover:{res.outcome}"
            # fresh, or a read-only action taken over (reading again is safe; the engine still awaits it)
            if row.target_kind == "host":
                self.app.inventory.check_not_protected(entry, row.address or None)
            pa = self._planned(row, entry, args)
            sessions = self.runner.sessions()
            try:
                out = self.runner.run(pa, row, sessions)
            finally:
                sessions.close_all()
            return out.state
        except LeaseLost as exc:
            self.app.audit.record("worker.lease_lost", incident=row.incident_id, action_id=row.id,
                                  site=self.site, worker=self.owner, detail=str(exc))
            return "lease_lost"
        except JournalUnavailable:
            raise  # the lease lapses; a worker of the site takes the action over when the journal is back
        except AgentError as exc:  # refused before anything was sent (not in this inventory, protected)
            if takeover or row.state != "intent":
                raise
            self.journal.transition(row, "failed", f"refused by the {self.site} worker: {exc}", error=str(exc),
                                    error_kind="refused")
            return "failed"

    def _planned(self, row: Action, entry: Any, args: dict[str, Any]) -> PlannedAction:
        """The planned action from the journal row — the authority, not the message: a message can only add to the
        addresses a device must never block (``protected``), which this worker computes from its own inventory
        and its own vantage point, as the planner does (a forged message cannot lift a guard)."""
        target = entry.target(row.address or None)
        step = Step(id=row.step, action=row.action, undo=row.kind == "undo")
        spec = self.planner._spec(target.connector, row.action, step)
        full = dict(row.args or {})
        if row.target_kind == "device":
            full["protected"] = sorted(set(self._protected(entry, target.address))
                                       | {str(p) for p in (args or {}).get("protected") or []})
        return PlannedAction(subject=row.subject or row.target, step=step, entry=entry, target=target,
                             action=row.action, args=full, spec=spec, undo_of=row.undo_of, snapshot=row.snapshot,
                             action_id=row.id)

    def _protected(self, entry: Any, address: str) -> list[str]:
        """What a block on this device must never cover: management, protected CIDRs, the device itself and
        where it sees this worker's sessions come from (agent.plan builds the same list for the planner)."""
        from agent.reach import agent_source
        inv = self.app.inventory
        out = [*(f"{m}/{32 if ':' not in m else 128}" for m in inv.management),
               *(str(c) for c in inv.protected_cidrs), address]
        source = agent_source(address, entry.port or 22, entry.jump)
        if source is not None:
            out.append(str(source[0]))
        return out

    def engine(self) -> Engine:
        """An engine over this worker's journal, for incident status after a takeover (never dispatches)."""
        if self._engine is None:
            engine = self.app.engine()
            engine.dispatcher = None
            engine.journal, engine.runner = self.journal, self.runner
            self._engine = engine
        return self._engine

    # -- takeovers without a message --------------------------------------------------------------------------
    def sweep(self, *, in_doubt: bool = False) -> list[str]:
        """Take over this site's actions whose worker's lease expired (the worker died mid-action); with
        ``in_doubt``, also re-verify its actions in doubt (the site's share of reconciliation: only its workers
        hold the credentials to read those targets)."""
        with self.app.store.session() as s:
            now = db_now(s)
            expired = (Action.lease_until.is_(None)) | (Action.lease_until < now)
            q = select(Action.id).where(Action.site == self.site, Action.state.in_(ACTIVE_STATES),
                                        Action.lease_until.is_not(None), Action.lease_until < now)
            ids = list(s.scalars(q.order_by(Action.seq)))
            # journaled but never claimed for longer than the engine waits: its publisher died between intent and
            # publish (or gave up); settled like any unfinished action — read the target first
            orphans = list(s.scalars(select(Action.id).where(
                Action.site == self.site, Action.state == "intent", Action.lease_until.is_(None),
                Action.created_at < now - timedelta(seconds=self.cfg.wait)).order_by(Action.seq)))
            if in_doubt:
                ids += list(s.scalars(select(Action.id).where(Action.site == self.site, Action.state == IN_DOUBT,
                                                              Action.undone_at.is_(None), expired)
                                      .order_by(Action.seq)))
        done = []
        for action_id in ids:
            got = self._claim(action_id, in_doubt=in_doubt)
            if got.result is ClaimResult.TAKEOVER:
                done.append(self._run(got, {}))
        for action_id in orphans:
            got = self._claim(action_id, orphan=True)  # no message will come: reconciled as a takeover
            if got.result is ClaimResult.TAKEOVER:
                done.append(self._run(got, {}))
        return done

    def reverify(self) -> list[str]:
        """Read back this site's active containments, split with its site-mates (agent/workers/reader.py)."""
        return self.reader.reverify(self.reverify_interval)

    def sweep_forever(self) -> None:
        rounds = 0
        while not self.stopping.wait(max(1.0, self.cfg.lease / 2)):
            rounds += 1
            try:
                self.sweep(in_doubt=rounds % 10 == 1)  # in doubt: at start and every 10 rounds (≈ 5 leases)
                self.reader.sweep()  # reads whose worker died mid-read
                if rounds % 10 == 5:  # drift: every 10 rounds, between the in-doubt sweeps
                    self.reverify()
            except Exception as exc:  # noqa: BLE001 - the database may be away: try again next round
                self.app.audit.record("worker.sweep_failed", site=self.site, worker=self.owner,
                                      error=f"{type(exc).__name__}: {exc}"[:500])


def quiet_root_warning() -> None:
    """Celery warns at start-up, as root, in a dozen lines ending "absolutely not recommended!": its concern is
    a root worker unpickling what arrives from the broker (celery/platforms.py ``check_privileges``; the
    SECURITY section of docs.celeryq.dev/en/stable/userguide/security.html). This worker accepts JSON only
    (agent/workers/celery_app.py), so that risk does not exist here; what remains true is said in one line —
    the worker needs no root (SSH, WinRM and LDAP connections only)."""
    import sys
    import warnings

    from celery.exceptions import SecurityWarning
    warnings.filterwarnings("ignore", category=SecurityWarning)
    if os.geteuid() == 0:
        print("note: running as root; the worker needs no root (it only opens SSH, WinRM and LDAP connections) — "
              "a service account that can read agent.yaml and the site's credentials is enough", file=sys.stderr,
              flush=True)


def serve(app: App, site: str, slots: int) -> int:
    """Run the Celery worker for ``site`` until stopped (SIGTERM: warm shutdown, running actions finish)."""
    from sqlalchemy.exc import DBAPIError

    from agent.workers.celery_app import RUN_ACTION, check_login, make_celery
    from agent.workers.config import queue_for
    from agent.workers.reads import READ_TASK

    worker = SiteWorker(app, site)
    cfg = worker.cfg
    celery = make_celery(cfg, name=f"agent-worker-{site}")
    check_login(celery, cfg)
    quiet_root_warning()

    @celery.task(name=RUN_ACTION, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run_action(task: Any, action_id: str, args: dict[str, Any]) -> str:
        try:
            return worker.execute(action_id, args)
        except (DBAPIError, JournalUnavailable) as exc:  # journal unreachable: not claimed, or the lease lapses
            raise task.retry(exc=exc, countdown=2, max_retries=None) from None

    @celery.task(name=READ_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def site_read(task: Any, read_id: str) -> str:
        try:
            return worker.reader.execute(read_id)
        except (DBAPIError, JournalUnavailable) as exc:  # journal unreachable: not claimed, or the lease lapses
            raise task.retry(exc=exc, countdown=2, max_retries=None) from None

    app.audit.record("worker.started", site=site, worker=worker.owner, queue=queue_for(site), slots=slots)
    sweeper = threading.Thread(target=worker.sweep_forever, name="lease-sweeper", daemon=True)
    sweeper.start()
    node = celery.Worker(queues=[queue_for(site)], concurrency=slots, pool="threads",
                         hostname=f"{site}@{socket.gethostname()}.{os.getpid()}", without_mingle=True,
                         without_gossip=True, loglevel="WARNING", quiet=True)
    try:
        node.start()
    finally:
        worker.stopping.set()
        app.audit.record("worker.stopped", site=site, worker=worker.owner)
    return int(getattr(node, "exitcode", 0) or 0)
