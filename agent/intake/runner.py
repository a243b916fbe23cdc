"""Runs plans for the daemon: a bounded pool, per-target locks, and the follow-up jobs each run needs.

Why per-target locks: the TTL release, the drift re-verification, a retry and a freshly approved plan can all
concern the same host at the same moment; each holds the target's lock while it reads and changes it, so the
re-verifier can never mistake a release in progress for drift. Locks are re-entrant (a drift re-apply runs
while its verifier holds the lock) and taken in sorted order (no deadlock between multi-target plans). On
PostgreSQL they also hold across daemons (:mod:`agent.target_locks`).

What is never done under them: waiting on a *read* at a worker site. The drift check of routed containments
(:func:`agent.drift._reverify_by_workers`) takes no lock — the re-apply and a release of the same action are
ordered on the worker by the action's gate (:mod:`agent.workers.gate`). A plan keeps its own targets locked
while a site's worker runs its actions and this process waits for the journal: that wait *is* the change of
those targets, which the lock serialises.

After a run: every applied action with a TTL gets its release job; every action in doubt gets a re-verification
job (``recheck:<id>``, with backoff: verify first, never re-snapshot); transient failures (unreachable before
anything was sent) of mutating actions are planned afresh, at most ``daemon.retry_attempts`` times.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from agent.store import Action, utcnow

__all__ = ["TRANSIENT_KINDS", "Runner"]

TRANSIENT_KINDS = ("unreachable", "timeout")


class Runner:
    def __init__(self, engine: Any, *, max_parallel: int, retry_attempts: int, retry_interval: timedelta,
                 metrics: Any = None) -> None:
        self.engine = engine
        self.retry_attempts, self.retry_interval = retry_attempts, retry_interval
        self.metrics = metrics
        self.scheduler: Any = None  # DaemonScheduler, set when the daemon starts one
        self.pool = ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="daemon-run")
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        # across daemons on one PostgreSQL: the outermost hold of a target also takes its database lock
        from agent.target_locks import TargetLocks
        self.xlocks = TargetLocks(engine.store.engine)
        self._depth: dict[str, int] = {}  # holds per target (changed only by the thread holding its RLock)
        self._inflight = 0
        self._idle = threading.Condition()

    # -- locks ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, targets: Iterable[str]) -> Iterator[None]:
        names = sorted(set(targets))
        with self._guard:
            locks = [self._locks.setdefault(t, threading.RLock()) for t in names]
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            # the database lock only at the outermost hold: a nested hold (drift re-apply) would otherwise
            # wait on a second session for the lock its own thread's first session holds
            outer = [t for t in names if not self._depth.get(t)]
            for t in names:
                self._depth[t] = self._depth.get(t, 0) + 1
            stack.callback(self._leave, names)
            stack.enter_context(self.xlocks.hold(outer))
            yield

    def _leave(self, names: list[str]) -> None:
        for t in names:
            self._depth[t] -= 1

    # -- running --------------------------------------------------------------------------------------------
    def submit(self, plan: Any, incident: str, *, reason: str, ttl: timedelta | None = None,
               approved_by: str | None = None, retry_attempt: int = 0, started: float | None = None,
               on_done: Callable[[Any], None] | None = None) -> Future[Any]:
        """Run ``plan`` in the pool; ``on_done(result_or_exception)`` is called when it finishes."""
        with self._idle:
            self._inflight += 1

        def task() -> Any:
            try:
                result: Any = self.run(plan, incident, reason=reason, ttl=ttl, approved_by=approved_by,
                                       retry_attempt=retry_attempt)
                if started is not None and self.metrics is not None:
                    self.metrics.run_latency.observe(time.monotonic() - started)
            except BaseException as exc:
                result = exc
                if on_done:
                    on_done(result)
                raise
            finally:
                with self._idle:
                    self._inflight -= 1
                    self._idle.notify_all()
            if on_done:
                on_done(result)
            return result
        return self.pool.submit(task)

    def run(self, plan: Any, incident: str, *, reason: str, ttl: timedelta | None = None,
            approved_by: str | None = None, retry_attempt: int = 0) -> Any:
        """Execute ``plan`` now, in this thread, holding its targets' locks; schedule follow-ups."""
        with self.locked(pa.target.name for pa in plan.actions):
            result = self.engine.execute(plan, incident, reason=reason, ttl=ttl, approved_by=approved_by)
        self.follow_up(result, retry_attempt)
        return result

    def follow_up(self, result: Any, retry_attempt: int = 0) -> None:
        if self.scheduler is None:
            return
        ids = [o.action_id for o in result.outcomes if o.action_id]
        if not ids:
            return
        with self.engine.store.session() as s:
            rows = list(s.scalars(select(Action).where(Action.id.in_(ids))))
        for row in rows:
            if row.kind != "apply":
                continue
            if row.state == "done" and row.expires_at is not None and row.changed:
                self.scheduler.schedule_release(row.id, row.expires_at)
            elif row.state == "in_doubt":
                self.scheduler.schedule_recheck(row.id, 1, utcnow() + self.retry_interval)
            elif (row.state == "failed" and row.mutating and row.error_kind in TRANSIENT_KINDS
                  and retry_attempt < self.retry_attempts):
                self.scheduler.schedule_recheck(row.id, retry_attempt + 1, utcnow() + self.retry_interval)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no plan is running (True) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def shutdown(self, grace: float) -> bool:
        """Stop taking work; wait ``grace`` seconds for running plans, then interrupt them between steps."""
        finished = self.wait_idle(grace)
        if not finished:
            self.engine.cancel.set()
            self.engine.audit.record("daemon.interrupting", detail="shutdown grace period over: running plans "
                                     "stop before their next step; the journal shows how far each got")
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.xlocks.close()
        return finished
