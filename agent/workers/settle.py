"""An action in doubt at a worker site, re-checked on the daemon's retry schedule: both sides.

The daemon's ``recheck:<action id>`` job (agent/scheduler.py: ``retry_interval`` × 2^(n-1), at most an hour)
settles an in-doubt action by reading its target first. For a target at a worker site the daemon cannot do that
itself — only the site's workers reach it and hold its credentials — so when the job fires it asks them
(:func:`recheck_at_site`): a worker of the site claims the *action* (:func:`agent.workers.lease.claim` with
``in_doubt=True``) and settles it through :meth:`agent.lifecycle.ActionRunner.resolve` (read the target's real
state; in effect → done, not applied again; absent → applied once from the journaled snapshot; unreadable → still
in doubt), and the daemon waits on the journal for the outcome, audits it and reschedules with the same backoff
while it stays in doubt. The worker's own sweep (every ~5 leases) stays as the fallback when no daemon runs.

Why a site read of kind ``settle`` (agent/workers/reads.py) and not a dedicated Celery task: the request has to
be journaled and claimable for the same reasons a read is. The row tells the daemon whether anybody of the site
took it at all — a read nobody claims within a lease and a connect timeout is given up, naming the site, so a site
with no live worker is audited as such (``recheck.unanswered``) and rescheduled instead of being waited on
forever or taken for "still in doubt"; a bare task could not tell "nobody listens" from "slow". The outcome and
the worker that settled it come back on the row, written once, fenced; a redelivered request is dropped, and one
whose worker died mid-way is taken over by the site's read sweep. No new task name, queue or table.

**One gate for the effect**: the read's claim only decides who answers the daemon; whether the *target* is
touched is decided by the action's claim — a compare-and-swap on its lease that the worker's sweep, a second
daemon's request and a redelivery all go through. The loser finds it held (a live worker is settling it) or
settled, and reports that; nothing is read-then-applied twice. A worker ends its lease as soon as a run leaves
an action in doubt (:meth:`agent.workers.worker.SiteWorker._run`), so the next attempt can claim it at once
rather than one lease later.

**Audited once, in the deployment's one chain**: the worker's records say what it read and did (its claim,
``reconcile.start``, the transitions with their detail, ``action.done`` / ``action.in_doubt``); the daemon adds
only what is its own — ``recheck.done`` (attempt, outcome, site, the worker that answered, the read, and
``retry_in`` seconds when it rescheduled) or ``recheck.unanswered`` (nobody of the site took it: the site and
the error naming it). The daemon does not hold its target lock while it waits: the action's claim is the gate,
and a lock held for a lease and a connect timeout would stall the daemon's other work on that target.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agent.outcomes import IN_DOUBT
from agent.states import ACTIVE_STATES
from agent.store import Action, utcnow
from agent.workers.lease import ClaimResult
from agent.workers.reads import ReadOutcome, finish

if TYPE_CHECKING:
    from agent.intake.service import IntakeService
    from agent.workers.models import SiteRead
    from agent.workers.reader import SiteReader

__all__ = ["Decision", "decide", "recheck_at_site", "settle_at_site"]


# -- the daemon's side ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What the daemon does after asking the site: the audit record, and whether (and when) to ask again."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    again_in: timedelta | None = None  # None: no further attempt (settled, or no longer this job's business)


def decide(got: ReadOutcome, state: str | None, attempt: int, delay: timedelta) -> Decision:
    """The daemon's decision from the site's answer ``got`` and the action's journaled ``state`` afterwards.

    ``delay`` is the backoff before attempt ``attempt + 1``. Asked again while the action is in doubt, or still
    being settled by a live worker (a sweep or another daemon's request won the claim: if it leaves the action
    in doubt, the backoff carries on from here). Never failed for a site that did not answer."""
    again = state == IN_DOUBT or state in ACTIVE_STATES
    fields: dict[str, Any] = {"attempt": attempt, "site": got.site, "read_id": got.id or None}
    if got.ok:
        fields.update(outcome=str(got.result.get("outcome") or state), state=state,
                      worker=str(got.result.get("worker") or got.worker or ""))
        if got.result.get("holder"):
            fields["holder"] = str(got.result["holder"])
        event = "recheck.done"
    elif got.worker is None:  # nobody of the site took it (or the broker was away): only this daemon can say so
        fields.update(state=state, error=got.error)
        event = "recheck.unanswered"
    else:  # a worker took it but failed, or has not finished yet: its own records say what it did
        fields.update(outcome="unknown", state=state, worker=got.worker, error=got.error)
        event = "recheck.done"
    if again:
        fields["retry_in"] = int(delay.total_seconds()) if delay.total_seconds().is_integer() \
            else delay.total_seconds()
    return Decision(event, fields, delay if again else None)


def recheck_at_site(svc: IntakeService, row: Action, attempt: int) -> None:
    """Fire one attempt of ``recheck:<id>`` for an in-doubt action at a worker site (module docstring)."""
    from agent.audit.outbox import settle as bring_in
    from agent.runctx import current_owner
    from agent.scheduler import recheck_delay, schedule_ttl_if_due
    from agent.workers.reads import for_process
    site = str(row.site)
    reads = for_process(svc.app.settings, svc.store, str(current_owner()), svc.runner.engine.cancel)
    # settling may read, apply from the snapshot and verify: twice a read's time before the daemon stops waiting
    reads.finish_within *= 2
    try:
        got = _SILENT.recent(site, reads.claim_within)
        if got is None:
            got = reads.run(site, "settle", target=row.target, target_kind=row.target_kind, address=row.address,
                            action=row.action, action_id=row.id, cause=f"daemon recheck {attempt}")
            if reads.cancel.is_set():
                return  # stopping: the next start's sweep schedules the re-check again
            _SILENT.note(got)
    finally:
        reads.close()
    with svc.store.session() as s:
        now: Action | None = s.get(Action, row.id)
        if now is not None:
            s.expunge(now)
    state = None if now is None or now.undone_at is not None else now.state
    decision = decide(got, state, attempt, recheck_delay(svc.config.retry_interval, attempt + 1))
    bring_in(svc.store, svc.audit)  # the worker's records of what it did go into the chain before ours
    svc.audit.record(decision.event, action_id=row.id, incident=row.incident_id, target=row.target,
                     action=row.action, **decision.fields)
    if decision.again_in is not None:
        svc.scheduler.schedule_recheck(row.id, attempt + 1, utcnow() + decision.again_in)
    elif now is not None:
        schedule_ttl_if_due(svc, now)


class _Silence:
    """Sites whose workers just left a re-check unanswered, so that the next re-checks there (an outbreak leaves
    dozens in doubt at a site) do not each hold one of the scheduler's 4 threads for a lease and a connect
    timeout, delaying TTL releases elsewhere: within that time after a re-check went unanswered, another one at
    the site is audited unanswered at once, naming the site and when it was asked, and rescheduled as usual.
    Any answer from the site (or a request nobody has given up on) clears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[str, tuple[float, str]] = {}

    def recent(self, site: str, within: float) -> ReadOutcome | None:
        with self._lock:
            seen = self._at.get(site)
        if seen is None or time.monotonic() - seen[0] > within:
            return None
        ago = time.monotonic() - seen[0]
        return ReadOutcome("", site, False, {}, f"{seen[1]} (a re-check at site {site} went unanswered {ago:.0f}s "
                                                "ago; not asked again so soon)")

    def note(self, got: ReadOutcome) -> None:
        with self._lock:
            if not got.ok and got.worker is None and got.id:
                self._at[got.site] = (time.monotonic(), got.error)
            else:
                self._at.pop(got.site, None)


_SILENT = _Silence()


# -- the worker's side ----------------------------------------------------------------------------------------
def settle_at_site(reader: SiteReader, read: SiteRead) -> str:
    """A ``settle`` read: claim the in-doubt action (the one gate) and settle it with the worker's ActionRunner,
    then write the outcome on the read, once (fenced). Held or settled by someone else: say so, touch nothing."""
    w = reader.w
    store = reader.app.store
    assert read.action_id is not None
    with store.session() as s:
        row = s.get(Action, read.action_id)
        state, holder = (row.state, row.owner) if row is not None else ("gone", "")
        undone = row is not None and row.undone_at is not None
    if state != IN_DOUBT or undone:
        return _answer(reader, read, _elsewhere(state, holder, undone))
    got = w._claim(read.action_id, in_doubt=True)
    if got.result not in (ClaimResult.FRESH, ClaimResult.TAKEOVER):
        now = got.row.state if got.row is not None else "gone"
        result = _elsewhere(now, got.previous_owner or "", False)
        if got.result in (ClaimResult.HELD, ClaimResult.LOST):
            result.update(outcome="held", holder=got.previous_owner or "another worker")
        return _answer(reader, read, result)
    ran = w._run(got, {})  # a takeover: ActionRunner.resolve — read first, never applied twice
    with store.session() as s:
        after = s.get(Action, read.action_id)
        state = after.state if after is not None else "gone"
    outcome = "lease_lost" if ran == "lease_lost" else state
    return _answer(reader, read, {"outcome": outcome, "state": state, "summary": ran})


def _elsewhere(state: str, holder: str, undone: bool) -> dict[str, Any]:
    """The answer when this worker did not settle it: being settled by a live holder, or no longer in doubt."""
    if state in ACTIVE_STATES:
        return {"outcome": "held", "state": state, "holder": holder or "another process",
                "summary": f"{state} now, held by {holder or 'another process'}; not touched here"}
    why = "undone" if undone else state
    return {"outcome": "settled", "state": state, "summary": f"no longer in doubt ({why}); not touched here"}


def _answer(reader: SiteReader, read: SiteRead, result: dict[str, Any]) -> str:
    with reader.app.store.session() as s:
        if not finish(s, read.id, reader.owner, result={**result, "worker": reader.owner}):
            return "lease_lost"
    return str(result["outcome"])
