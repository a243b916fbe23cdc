"""Drift: whether each active containment is still in effect on its target, and what happens when it is not.

The daemon's periodic ``reverify`` job (:mod:`agent.scheduler`) calls :func:`reverify_active`. Each active
action's live items are read back through the engine's ActionRunner; the outcome is recorded as proof
(``agent.proof``), drift is audited and, with ``drift_policy: reapply``, applied again *in place* from the
action's journaled snapshot (never a new one: see :meth:`agent.lifecycle.ActionRunner.reapply`). Kept apart from
the scheduler because deciding what drift means is its own job; the scheduler only decides when to look.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agent.store import Action, utcnow

if TYPE_CHECKING:  # the service passes itself in; importing it here would be a cycle
    from agent.intake.service import IntakeService

__all__ = ["active_action", "held_by_workers", "reverify_active", "verify_action"]


def active_action(svc: IntakeService, action_id: str) -> Action | None:
    """The applied, changed, not yet undone action ``action_id``; None if it is no longer active."""
    with svc.store.session() as s:
        row: Action | None = s.get(Action, action_id)
    if row is None or row.kind != "apply" or row.state != "done" or row.undone_at is not None or not row.changed:
        return None
    return row


def held_by_workers(svc: IntakeService, row: Action) -> bool:
    """A site-routed action whose target this daemon has no credentials for (agent/workers/config.py)."""
    from agent.errors import AgentError
    from agent.workers.config import left_to_workers
    if row.site is None:
        return False
    try:
        entry = svc.app.planner().entry_for(row)
    except AgentError:
        return False
    return left_to_workers(svc.app.settings.workers, row.site, entry.credentials)


def verify_action(svc: IntakeService, row: Action) -> Any:
    """Read back whether the row's live items are in effect (through the engine's ActionRunner)."""
    return svc.engine.runner.read_state(row, svc.app.planner().entry_for(row), args=_live_args(svc, row))


def _live_args(svc: IntakeService, row: Action) -> dict[str, Any]:
    """The row's args for its items still in effect: addresses of a batch unblocked one by one are not drift."""
    from agent.batching import active_items
    from agent.items import slice_for_undo
    found = active_items(svc.store, action_ids=[row.id]).get(row.id)
    if found is None:
        return dict(row.args or {})
    fresh, items = found
    return slice_for_undo(fresh, items)[0]


def reverify_active(svc: IntakeService) -> bool:
    """Verify every active containment; drift is audited and re-applied or alerted per policy. False when the
    daemon is stopping and the pass was cut short."""
    now = utcnow()
    rows = [r for r in svc.app.planner().active_actions(None)
            if r.state == "done" and r.mutating and (r.expires_at is None or r.expires_at > now + timedelta(seconds=2))]
    cfg = svc.app.settings.workers
    routed = [r for r in rows if cfg is not None and cfg.routes(r.site)]
    for row in rows:
        if svc.runner.engine.cancel.is_set():
            return False
        if row not in routed:
            _reverify_one(svc, row)
    if routed:
        _reverify_by_workers(svc, routed)
    return True


def _reverify_by_workers(svc: IntakeService, rows: list[Action]) -> None:
    """The containments at worker sites: each site's workers read them (only they reach them and hold their
    credentials) and, with ``drift_policy: reapply``, re-apply a drifted one in place under the action's gate
    (agent/workers/reader.py) — so two daemons asking, or two workers taking the request, re-apply it once. All
    are asked at once and awaited on the journal. The worker audits what it saw and did (one chain: not restated
    here); this daemon audits only a site that did not answer.

    No target lock is held, neither while asking nor while waiting: a site may take its connect and command
    timeouts to answer, or not answer at all (≈ 115 s by default), and a lock on every routed target held over
    that wait made each release, TTL release, approval and plan of any of them — in this daemon and, through
    the advisory locks, in the other — wait for the slowest site. What the lock used to guard is decided where
    both changes happen, on the worker, in the shared journal (agent/workers/gate.py): a re-apply and an undo of
    the same action take the same gate, the re-apply sends nothing once a release of it is journaled, and a
    drift read while a release is under way is reported as that, not as drift."""
    from agent.runctx import current_owner
    from agent.workers.reads import for_process
    policy = svc.config.drift_policy
    kind = "reapply" if policy == "reapply" else "verify"
    live = [r for r in (active_action(svc, row.id) for row in rows) if r is not None]
    if not live:
        return
    reads = for_process(svc.app.settings, svc.store, str(current_owner()), svc.runner.engine.cancel)
    try:
        ids = [reads.request(str(r.site), kind, target=r.target, target_kind=r.target_kind, address=r.address,
                             action=r.action, action_id=r.id, cause="daemon") for r in live]
        outcomes = reads.wait(ids)
    finally:
        reads.close()
    for row, got in zip(live, outcomes, strict=True):
        if not got.ok and got.worker is None:  # nobody of the site read it: only this daemon can say so
            if active_action(svc, row.id) is None:
                continue  # released while the site did not answer: nothing left to verify
            svc.audit.record("containment.unverified", incident=row.incident_id, action_id=row.id,
                             target=row.target, action=row.action, site=row.site, read_id=got.id, error=got.error)
        elif got.result.get("state") == "drift":
            svc.metrics.drift.labels(policy).inc()


def _reverify_one(svc: IntakeService, row: Action) -> None:
    from agent.errors import AgentError
    from agent.proof import record_check
    from connectors.errors import ConnectorError
    with svc.runner.locked([row.target]):
        fresh = active_action(svc, row.id)
        if fresh is None or held_by_workers(svc, fresh):
            return
        try:
            ver = verify_action(svc, fresh)
        except (ConnectorError, AgentError) as exc:
            record_check(svc.store, row.id, "unverified", f"could not read {row.target}: {exc}", "daemon")
            svc.audit.record("containment.unverified", incident=row.incident_id, action_id=row.id,
                             target=row.target, action=row.action, error=str(exc))
            return
        record_check(svc.store, row.id, "in_effect" if ver.in_effect else "drift",
                     ver.summary if ver.in_effect else f"no longer in effect: {ver.summary}", "daemon")
        if ver.in_effect:
            return
        policy = svc.config.drift_policy
        svc.metrics.drift.labels(policy).inc()
        svc.audit.record("containment.drift", incident=row.incident_id, action_id=row.id, target=row.target,
                         action=row.action, observed=ver.to_dict(), policy=policy,
                         detail=f"{row.action} on {row.target} is no longer in effect: {ver.summary}")
        if policy != "reapply":
            return
        _reapply(svc, fresh, ver.summary)


def _reapply(svc: IntakeService, row: Action, why: str) -> None:
    """Apply the drifted action again in place, from its journaled snapshot (:meth:`ActionRunner.reapply`)."""
    from agent.batching import active_items
    from agent.items import slice_for_undo
    found = active_items(svc.store, action_ids=[row.id]).get(row.id)
    args, snapshot = slice_for_undo(*found) if found is not None else (None, None)
    out = svc.engine.runner.reapply(row, svc.app.planner().entry_for(row), why, args=args, snapshot=snapshot)
    svc.engine.update_incident_status(row.incident_id)
    if out.outcome == "in_doubt":
        svc.scheduler.schedule_recheck(row.id, 1, utcnow() + svc.config.retry_interval)
    svc.audit.record("containment.reapplied" if out.outcome == "done" else "containment.reapply_failed",
                     incident=row.incident_id, action_id=row.id, target=row.target, action=row.action,
                     outcome=out.outcome, detail=out.detail)
