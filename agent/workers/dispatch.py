"""The engine's side of per-site workers: queue a journaled action to its target's site and wait for the journal.

Why the engine waits on the journal and not on a Celery result: the journal row is what the worker commits at
every step (the same transitions as a single machine), so the engine's outcome is whatever the row says — done,
failed, in doubt — and a worker that died, a redelivery or a takeover changes nothing about where to look. One
poller thread reads every awaited row in one query per tick, so 100 actions in flight cost one query, not 100.

An action not settled within ``workers.wait`` is reported **in doubt** (the worker may still apply it; the
journal settles it), never failed. The engine's run does not write that row: its worker owns it.

A site nobody serves is told apart (agent/workers/presence.py): once its queue has had no consumer for
``workers.no_worker_after`` seconds, an action no worker ever claimed is claimed here — the same compare-and-swap
a worker would have to win, so exactly one side has it — and journaled failed, nothing sent (a worker started
later finds it settled and drops it); an action a worker claimed and stopped renewing (it died) may have reached
its target and is reported in doubt at once, for the site's next worker to settle from the target.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from agent.failpoints import failpoint
from agent.outcomes import IN_DOUBT, ActionOutcome, Interrupted
from agent.store import Action
from agent.workers.config import WorkersConfig, queue_for
from agent.workers.presence import SitePresence

if TYPE_CHECKING:
    from agent.journal import Journal
    from agent.plan import PlannedAction

__all__ = ["SETTLED", "SiteDispatcher"]

SETTLED = ("done", "failed", "skipped", IN_DOUBT)
BROKER_WAIT = 60.0  # seconds a publish is retried while the broker is unreachable


@dataclass
class _Waiter:
    site: str
    event: threading.Event = field(default_factory=threading.Event)
    row: Action | None = None


class SiteDispatcher:
    """Routes actions on targets at worker sites to those sites' queues (``workers.sites`` in agent.yaml)."""

    def __init__(self, cfg: WorkersConfig, journal: Journal, cancel: threading.Event, *, tick: float = 0.05) -> None:
        self.cfg, self.journal, self.cancel, self.tick = cfg, journal, cancel, tick
        self.store, self.audit = journal.store, journal.audit
        self._celery: Any = None
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiter] = {}
        self._poller: threading.Thread | None = None
        self._ready = threading.Event()
        self._warming = False
        self._presence = SitePresence(self._presence_connection)
        self._watcher: threading.Thread | None = None
        # Import Celery now, beside planning, not between an action's journaled intent and its publish (≈ 0.2 s on
        # this machine kind); no network yet — an engine that never dispatches (status, a worker's) opens nothing.
        threading.Thread(target=self._app, name="site-dispatch-import", daemon=True).start()

    def warm(self) -> None:
        """Open the broker connection in the background (the engine calls it as a run starts); idempotent."""
        with self._lock:
            if self._warming:
                return
            self._warming = True
        threading.Thread(target=self._connect, name="site-dispatch-warm", daemon=True).start()

    def _connect(self) -> None:
        try:
            app = self._app()
            with app.producer_or_acquire() as producer:
                producer.connection.ensure_connection(max_retries=1)
        except Exception:  # noqa: BLE001, S110 - the first send retries and reports it
            pass
        finally:
            self._ready.set()

    def _app(self) -> Any:
        from agent.workers.celery_app import make_celery
        with self._lock:
            if self._celery is None:
                self._celery = make_celery(self.cfg)
            return self._celery

    def _presence_connection(self) -> Any:
        """A broker connection of the presence checks' own (kombu), not one of the publishers' pool."""
        conn = self._app().connection_for_write()
        conn.ensure_connection(max_retries=1)
        return conn

    def handles(self, pa: PlannedAction) -> bool:
        return self.cfg.routes(pa.entry.site)

    def run(self, pa: PlannedAction, row: Action) -> ActionOutcome:
        """Queue ``row`` (already journaled as intent) for its site and return its outcome once settled."""
        site = str(pa.entry.site)
        waiter = _Waiter(site)
        with self._lock:
            self._waiting[row.id] = waiter
            if self._poller is None or not self._poller.is_alive():
                self._poller = threading.Thread(target=self._poll, name="site-dispatch", daemon=True)
                self._poller.start()
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(target=self._watch, name="site-presence", daemon=True)
                self._watcher.start()
        try:
            failpoint("after-intent")  # as in the runner: journaled, nothing sent (here: nothing published)
            try:
                self._send(site, row.id, _task_args(pa.args))
            except Exception as exc:  # noqa: BLE001 - the broker stayed unreachable: see _unsent
                unsent = self._unsent(pa, row, site, exc)
                if unsent is not None:
                    return unsent
            self.audit.record("action.queued", incident=row.incident_id, action_id=row.id, target=row.target,
                              action=row.action, kind=row.kind, site=site, queue=queue_for(site))
            deadline = time.monotonic() + self.cfg.wait
            while not waiter.event.wait(0.2):
                if self.cancel.is_set():
                    raise Interrupted("cancelled while a site worker runs the action")
                if time.monotonic() > deadline:
                    return _outcome(pa, row, None, site, self.cfg.wait)
                if self._presence.absent_for(site) >= self.cfg.no_worker_after:
                    nobody = self._no_worker(pa, row, site)
                    if nobody is not None:
                        return nobody
            settled = waiter.row
            assert settled is not None
            self._record()
            return _outcome(pa, row, settled, site, self.cfg.wait)
        finally:
            with self._lock:
                self._waiting.pop(row.id, None)

    def _record(self) -> None:
        """The worker queued its records (claim, snapshot, apply, verify, outcome) for the deployment's one audit
        chain in the transactions of its transitions; if this process writes that chain, they are appended now,
        before the outcome is returned — so the chain reads in order and a run's report is complete when it
        prints (agent/audit/outbox.py). Nothing is recorded twice: the outcome is the worker's own record."""
        from agent.audit.outbox import settle
        settle(self.store, self.audit)

    def _unsent(self, pa: PlannedAction, row: Action, site: str, exc: Exception) -> ActionOutcome | None:
        """Publishing failed for good. If no worker has claimed the action (the message may still have reached
        the broker unconfirmed), claim it here and record it failed — nothing was sent to the target, and a late
        delivery now finds it settled and drops it. If a worker did claim it, its outcome is awaited as usual."""
        from agent.workers.lease import ClaimResult, claim
        got = claim(self.store, row.id, self.journal.owner, self.cfg.wait, site=site, fresh_only=True)
        if got.result is not ClaimResult.FRESH:
            return None
        from agent.workers.celery_app import login_refused
        refused = login_refused(self.cfg, exc)
        why = (f"workers.broker_password: {refused.reason}" if refused is not None
               else f"the broker could not be reached ({type(exc).__name__}: {exc})")
        return self._failed_unsent(pa, row, site, f"not queued for site {site}: {why}; nothing was sent")

    def _failed_unsent(self, pa: PlannedAction, row: Action, site: str, message: str) -> ActionOutcome:
        """Journal an action this process claimed back (``fresh_only``: nothing was sent) as failed, unreachable —
        so the daemon's retry plans it again later — and return that outcome."""
        self.journal.transition(row, "failed", message, error=message, error_kind="unreachable")
        out = _outcome(pa, row, None, site, self.cfg.wait)
        out.state, out.summary, out.error, out.error_kind = "failed", f"failed: {message}", message, "unreachable"
        return out

    def _no_worker(self, pa: PlannedAction, row: Action, site: str) -> ActionOutcome | None:
        """The site's queue has had no consumer for ``no_worker_after`` seconds: stop waiting for it.

        Never claimed → claimed here (``fresh_only``: a worker that wins the race first runs it as usual) and
        failed, nothing sent — "unreachable", so the daemon's retry plans it again later. Claimed by a worker
        whose lease lapsed → in doubt now (it may have reached the target; only the site's workers can read the
        target, so the row is left as it is for them). A live lease, or already settled → keep waiting."""
        from agent.workers.lease import ClaimResult, claim
        absent = self._presence.absent_for(site)
        got = claim(self.store, row.id, self.journal.owner, self.cfg.wait, site=site, fresh_only=True)
        start = f"start `agent worker --site {site}` on a host that reaches the site"
        if got.result is ClaimResult.FRESH:
            return self._failed_unsent(pa, row, site, (
                f"not run: no worker of site {site} is connected to the broker (queue {queue_for(site)} has had no "
                f"consumer for {absent:.0f}s) — nothing was sent to {row.target}; {start}, then run it again"))
        if got.result is ClaimResult.EXPIRED:
            out = _outcome(pa, row, None, site, self.cfg.wait)
            out.summary = (f"in doubt — the site {site} worker that held it ({got.previous_owner}) stopped renewing "
                           f"its lease and no worker of site {site} is connected (for {absent:.0f}s): it may have "
                           f"reached {row.target}; {start} — it reads {row.target} first and settles the action")
            out.error = out.summary
            return out
        return None

    def _send(self, site: str, action_id: str, args: dict[str, Any]) -> None:
        """Publish, retrying for up to :data:`BROKER_WAIT` seconds while the broker is away (a restart takes
        seconds). A publish whose confirmation was lost may be sent twice: the second delivery finds the action
        claimed or settled and is dropped (agent/workers/lease.py), which is why retrying here is safe."""
        from agent.workers.celery_app import login_refused, send_action
        self.warm()
        self._ready.wait(30)  # one connection, made by the warm-up, rather than one per racing thread
        deadline, delay = time.monotonic() + BROKER_WAIT, 0.5
        while True:
            try:
                send_action(self._app(), site, action_id, args)
                return
            except Exception as exc:
                if time.monotonic() > deadline or self.cancel.is_set() or login_refused(self.cfg, exc) is not None:
                    raise  # a refused login is a wrong password: retrying cannot fix it
            time.sleep(delay)
            delay = min(3.0, delay * 2)

    def _poll(self) -> None:
        """One query per tick for every awaited row; wakes the waiters whose row settled."""
        while True:
            with self._lock:
                ids = list(self._waiting)
            if not ids:
                with self._lock:
                    if not self._waiting:
                        self._poller = None
                        return
                continue
            try:
                with self.store.session() as s:
                    rows = list(s.scalars(select(Action).where(Action.id.in_(ids), Action.state.in_(SETTLED))))
                    for row in rows:
                        s.expunge(row)
            except Exception:  # noqa: BLE001 - the database is unreachable: keep waiting, it may return
                rows = []
            with self._lock:
                for row in rows:
                    waiter = self._waiting.get(row.id)
                    if waiter is not None and not waiter.event.is_set():
                        waiter.row = row
                        waiter.event.set()
            time.sleep(self.tick)

    def _watch(self) -> None:
        """Ask the broker, about once a second, whether each awaited site has a worker connected — in a thread
        of its own, so a broker that is slow to answer never delays noticing a settled action."""
        while True:
            with self._lock:
                sites = sorted({w.site for w in self._waiting.values() if not w.event.is_set()})
                if not self._waiting:
                    self._watcher = None
                    return
            for site in sites:
                self._presence.check(site)
            time.sleep(self._presence.every / 2)

    def close(self) -> None:
        self._presence.close()
        app, self._celery = self._celery, None
        if app is not None:
            app.close()


def _task_args(args: dict[str, Any]) -> dict[str, Any]:
    """The planned arguments as JSON (protected CIDRs included: the worker's connector guards with them too)."""
    import json
    out: dict[str, Any] = json.loads(json.dumps(args, default=str))
    return out


def _outcome(pa: PlannedAction, row: Action, settled: Action | None, site: str, wait: float) -> ActionOutcome:
    out = ActionOutcome(subject=pa.subject, step=pa.step.id, target=pa.target.name, action=pa.action,
                        kind=row.kind, state=IN_DOUBT, action_id=row.id)
    if settled is None:
        out.summary = (f"in doubt — queued for site {site}, not settled within {wait:g}s; a worker of the site "
                       "may still run it (the journal settles it)")
        out.error, out.error_kind = out.summary, "timeout"
        return out
    row.state, row.changed, row.owner = settled.state, settled.changed, settled.owner
    row.result, row.verification, row.error, row.error_kind = (settled.result, settled.verification,
                                                                settled.error, settled.error_kind)
    out.state = settled.state
    out.changed = bool(settled.changed)
    result = settled.result or {}
    verification = settled.verification or {}
    out.summary = str(result.get("summary") or verification.get("summary") or "")
    out.warnings = list(result.get("warnings") or [])
    if settled.state in ("failed", IN_DOUBT):
        out.error, out.error_kind = settled.error, settled.error_kind
        out.summary = (("in doubt — verifying: " if settled.state == IN_DOUBT else "failed: ")
                       + str(settled.error or out.summary))
    return out
