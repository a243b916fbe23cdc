"""The worker's side of site reads (agent/workers/reads.py): read-backs, drift re-applies and resolve steps for a
process that holds no credentials for this site's targets, plus the site's own periodic read-back.

Each read is claimed by lease before anything is opened, and settled once, fenced, in the transaction that
journals its proof (``re-verified <result> (<cause> by <site> worker <owner>): …``), so the journal says who read
what, when. A re-apply (``drift_policy: reapply``, asked by the daemon) additionally takes the *action's* gate
(agent/workers/gate.py: its lease on the ``done`` row, which an undo of it takes too) and, under it, checks that
no release is under way and reads the target again before sending anything: two daemons asking, or two workers
taking the same request, re-apply once (the second finds it in effect), and a release and a re-apply never
change the target at the same time — the asker need hold no lock while it waits. A drift read while a release
is under way is reported as that, not as drift.

The periodic read-back (:meth:`SiteReader.reverify`) is split between a site's workers: each containment is read
under a PostgreSQL advisory lock taken without waiting, and skipped when another worker journaled a read of it
within half the interval — so each is read about once per interval, by whichever worker gets there first.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from agent.errors import AgentError
from agent.journal import JournalUnavailable
from agent.failpoints import failpoint
from agent.store import Action
from agent.workers import gate
from agent.workers.models import SiteRead
from agent.workers.lease import ClaimResult, Heartbeat, db_now
from agent.workers.reads import claim_read, finish

if TYPE_CHECKING:
    from agent.workers.worker import SiteWorker

__all__ = ["SiteReader"]

Event = tuple[str, dict[str, Any]]  # an audit record: event name and fields

KEEP_READS = timedelta(hours=1)  # settled site reads are deleted after this (their proofs stay in the journal)
_REVERIFY_LOCK = 7781003  # advisory lock class (two-key form) of a periodic read-back; 7781001/2: seq, drain


class SiteReader:
    """Runs the reads of one worker (``SiteWorker``: its app, site, journal, runner and lease)."""

    def __init__(self, worker: SiteWorker) -> None:
        self.w = worker
        self.app, self.site, self.owner = worker.app, worker.site, worker.owner

    def by(self, cause: str) -> str:
        return f"{cause or 'read'} by {self.site} worker {self.owner}"

    # -- one delivery -------------------------------------------------------------------------------------------
    def execute(self, read_id: str) -> str:
        got = claim_read(self.app.store, read_id, self.owner, self.w.cfg.lease, site=self.site)
        if got.result not in (ClaimResult.FRESH, ClaimResult.TAKEOVER):
            self.app.audit.record("worker.dropped", read_id=read_id, site=self.site, worker=self.owner,
                                  reason=got.result.value, holder=got.previous_owner or None)
            return str(got.result.value)
        with self.app.store.session() as s:
            row = s.get(SiteRead, read_id)
            assert row is not None
            s.expunge(row)
        self.app.audit.record("worker.read_claimed", read_id=read_id, site=self.site, worker=self.owner,
                              kind=row.kind, target=row.target, action_id=row.action_id, cause=row.cause,
                              takeover=got.result is ClaimResult.TAKEOVER)
        with Heartbeat(self.app.store, read_id, self.owner, self.w.cfg.lease, model=SiteRead):
            try:
                if row.kind in ("verify", "reapply"):
                    return self._verify(row, reapply=row.kind == "reapply")
                if row.kind == "settle":  # an action in doubt, on the daemon's retry schedule
                    from agent.workers.settle import settle_at_site
                    return settle_at_site(self, row)
                return self._resolve(row)
            except (JournalUnavailable, DBAPIError):
                raise  # not settled: the task retries, or the lease lapses and a site-mate takes the read over
            except Exception as exc:  # noqa: BLE001 - a failure is this read's outcome, never a lost read
                message = f"{type(exc).__name__}: {exc}"[:1000] if not isinstance(exc, AgentError) else str(exc)
                with self.app.store.session() as s:
                    finish(s, read_id, self.owner, error=f"the {self.site} worker could not do it: {message}")
                return "failed"

    def _entry(self, kind: str, name: str) -> Any:
        inv = self.app.inventory
        entry = inv.device(name) if kind == "device" else inv.directory(name) if kind == "account" else inv.host(name)
        if entry.site != self.site:
            raise AgentError(f"{name} is at site {entry.site or 'none'} in this worker's inventory, not {self.site}: "
                             "not reading it")
        return entry

    # -- resolve steps (docs/architecture.md, decision 1): read-only, before the plan is shown -------------------
    def _resolve(self, row: SiteRead) -> str:
        """The connector's read-only ``resolve`` (facts for an exact preview) or ``identify`` (account names to
        the directory's identities) — the same calls the planner makes when it holds the credentials — or
        ``pin``: the host's allow-list DNS names, resolved by this worker's resolver (agent.reach)."""
        entry = self._entry(row.target_kind, row.target)
        if row.kind == "pin":
            from agent.reach import resolve_names
            return self._resolved(row, {"pins": resolve_names(entry.allow)})
        target = entry.target(row.address or None)
        conn: Any = self.app.registry.get(target.connector)
        method = getattr(conn, "resolve" if row.kind == "resolve" else "identify", None)
        if method is None or entry.credentials is None:
            raise AgentError(f"{target.connector} on {row.target} has no {row.kind} step or no credentials here")
        session = conn.open(target, entry.credentials.resolve(), self.app.ctx)
        try:
            if row.kind == "resolve":
                result: dict[str, Any] = {"facts": method(session, row.action, dict(row.args or {}))}
            else:
                result = {"identities": method(session, list((row.args or {}).get("names") or []))}
        finally:
            session.close()
        return self._resolved(row, result)

    def _resolved(self, row: SiteRead, result: dict[str, Any]) -> str:
        with self.app.store.session() as s:
            if not finish(s, row.id, self.owner, result=result):
                return "lease_lost"
        self.app.audit.record("worker.resolved", read_id=row.id, site=self.site, worker=self.owner, kind=row.kind,
                              target=row.target, action=row.action, cause=row.cause)
        return "done"

    # -- read-backs and re-applies --------------------------------------------------------------------------
    def _verify(self, read: SiteRead, *, reapply: bool) -> str:
        assert read.action_id is not None
        row = self._active(read.action_id)
        if row is None:
            busy = self._busy(read.action_id)
            result = ({"state": "held", "outcome": "held", "worker": self.owner, "summary": busy} if busy else
                      {"state": "gone", "outcome": "skipped", "summary": "no longer active: released or forgotten"})
            with self.app.store.session() as s:
                finish(s, read.id, self.owner, result=result)
            return str(result["state"])
        entry = self._entry(row.target_kind, row.target)
        if reapply:
            return self._reapply(read, row, entry)
        live = _live_args(self.app.store, row)
        state, summary, observed = self._read(row, entry, live)
        if state == "drift":
            moved = self._moved(row.id, live)
            if moved:  # a release (or a re-apply) changed it while it was read: on purpose, not drift
                return self._settle(read, row, moved[0], "skipped", moved[1], {})
        return self._settle(read, row, state, state, summary, observed, event=self._event(
            row, state, summary, observed, read.cause, "alert"))

    def _read(self, row: Action, entry: Any, live: dict[str, Any] | None = None) -> tuple[str, str, dict[str, Any]]:
        from connectors.errors import ConnectorError
        args = _live_args(self.app.store, row) if live is None else live
        try:
            ver = self.w.runner.read_state(row, entry, args=args, patient=False)
        except (ConnectorError, AgentError) as exc:
            return "unverified", f"could not read {row.target}: {exc}", {}
        if ver.in_effect:
            return "in_effect", ver.summary, dict(ver.observed or {})
        return "drift", f"no longer in effect: {ver.summary}", dict(ver.observed or {})

    def _moved(self, action_id: str, live: dict[str, Any], *, gated: bool = False) -> tuple[str, str] | None:
        """Why a drift just read is no drift: the action was released (wholly, or the items read) or a release
        of it is under way (agent/workers/gate.py), or — unless this worker holds its gate (``gated``) — someone
        holds the gate, changing it right now. ``(state, summary)`` for the read's result; None: it is drift.

        Why after the read: an undo's row is committed before its worker sends anything, and the undo holds the
        gate until the action is marked undone; so a release that could have caused what was read shows here."""
        with self.app.store.session() as s:
            row = s.get(Action, action_id)
            if row is None or row.undone_at is not None:
                return "gone", "released meanwhile: not drift"
            if gate.release_under_way(s, action_id):
                return "gone", "a release of it is under way: not drift"
            if not gated and row.lease_until is not None and row.lease_until > db_now(s):
                return "held", f"being changed by {row.owner or 'another process'} ({row.state}): not judged now"
        if _live_args(self.app.store, row) != live:
            return "gone", "part of it was released meanwhile: not drift"
        return None

    def _reapply(self, read: SiteRead, row: Action, entry: Any) -> str:
        """Read; in effect → nothing sent, the action row untouched. Drifted → under the action's lease, read
        again (a site-mate may have re-applied it meanwhile) and re-apply once, in place, from the journaled
        snapshot (:meth:`ActionRunner.reapply`, the worker's fenced journal), then verified."""
        from agent.batching import active_items
        from agent.items import slice_for_undo
        from agent.proof import add_check
        state, summary, observed = self._read(row, entry)
        if state != "drift":
            return self._settle(read, row, state, "in_effect" if state == "in_effect" else "unverified", summary,
                                observed, event=self._event(row, state, summary, observed, read.cause, "reapply"))
        holder = self._gate(row.id)
        if holder is not None:  # a release, or a site-mate re-applying or reconciling it: its outcome is its own
            return self._settle(read, row, "held", "held", f"being handled by {holder}; not re-applied here", {})
        try:
            with Heartbeat(self.app.store, row.id, self.owner, self.w.cfg.lease):
                # the gate is ours (committed): a release planned from now on waits for it; one planned before
                # shows here — then the containment is lifted on purpose, never re-applied over
                fresh = self._active(row.id)
                if fresh is None or self._undo_under_way(row.id):
                    return self._settle(read, row, "gone", "skipped", "released meanwhile: not re-applied", {})
                row = fresh
                live = _live_args(self.app.store, row)
                state, summary, observed = self._read(row, entry, live)
                event = self._event(row, state, summary, observed, read.cause, "reapply")
                if state != "drift":
                    return self._settle(read, row, state, "in_effect" if state == "in_effect" else "unverified",
                                        summary, observed, event=event)
                moved = self._moved(row.id, live, gated=True)
                if moved:
                    return self._settle(read, row, moved[0], "skipped", moved[1] + "; not re-applied", {})
                with self.app.store.session() as s:  # the drift, journaled and audited before anything is sent
                    add_check(s, row.id, "drift", summary, self.by(read.cause))
                    self._audit(s, event)
                found = active_items(self.app.store, action_ids=[row.id]).get(row.id)
                args, snap = slice_for_undo(*found) if found is not None else (None, None)
                failpoint("reapply-gated")
                res = self.w.runner.reapply(row, entry, summary, args=args, snapshot=snap)
                self.w.engine().update_incident_status(row.incident_id)
                return self._settle(read, row, "drift", res.outcome, res.detail, observed, proof=False, event=(
                    "containment.reapplied" if res.outcome == "done" else "containment.reapply_failed",
                    {"incident": row.incident_id, "action_id": row.id, "target": row.target, "action": row.action,
                     "site": self.site, "worker": self.owner, "cause": read.cause, "outcome": res.outcome,
                     "detail": res.detail}))
        finally:
            gate.release(self.app.store, row.id, self.owner)
            self.w.unclaim(row.id)

    def _settle(self, read: SiteRead, row: Action, state: str, outcome: str, summary: str,
                observed: dict[str, Any], *, proof: bool = True, event: Event | None = None) -> str:
        """Write the read's result once (fenced) with its proof on the action and its audit record, in one
        transaction: a worker killed at any point leaves all three or none (and the read is taken over)."""
        from agent.proof import RESULTS, add_check
        with self.app.store.session() as s:
            if not finish(s, read.id, self.owner, result={"state": state, "outcome": outcome, "summary": summary,
                                                         "observed": observed, "worker": self.owner}):
                return "lease_lost"
            if proof and state in RESULTS:
                add_check(s, row.id, state, summary, self.by(read.cause))
            self._audit(s, event)
        return outcome

    def _event(self, row: Action, state: str, summary: str, observed: dict[str, Any], cause: str,
               policy: str) -> Event | None:
        """The audit record of a read that did not find the containment in effect (None when it did)."""
        fields = {"incident": row.incident_id, "action_id": row.id, "target": row.target, "action": row.action,
                  "site": self.site, "worker": self.owner, "cause": cause or "sweep"}
        if state == "drift":
            return "containment.drift", {**fields, "observed": observed, "policy": policy,
                                         "detail": f"{row.action} on {row.target} is no longer in effect: {summary}"}
        if state == "unverified":
            return "containment.unverified", {**fields, "error": summary}
        return None

    def _audit(self, s: Any, event: Event | None) -> None:
        """Record ``event`` in the journal transaction ``s`` (the deployment's chain takes it from the outbox
        committed with the proof: agent/audit/outbox.py), or plainly with a sink that has no transactions."""
        if event is None:
            return
        bound = getattr(self.app.audit, "bound", None)
        if bound is None:
            self.app.audit.record(event[0], **event[1])
            return
        with bound(s):
            self.app.audit.record(event[0], **event[1])

    def _gate(self, action_id: str) -> str | None:
        """Take the gate of an active (``done``) action for a re-apply (agent/workers/gate.py); None when won,
        else who holds it: a release, or a site-mate re-applying or reconciling it."""
        if not self.w.claim_here(action_id):  # a thread of this process: our own sweeper, a re-apply, an undo
            return f"{self.owner} (another thread)"
        holder = gate.take(self.app.store, action_id, self.owner, self.w.cfg.lease)
        if holder is not None:
            self.w.unclaim(action_id)
        return holder

    def _active(self, action_id: str) -> Action | None:
        with self.app.store.session() as s:
            row = s.get(Action, action_id)
            if row is None or row.kind != "apply" or row.state != "done" or row.undone_at is not None \
                    or not row.changed:
                return None
            s.expunge(row)
            return row

    def _busy(self, action_id: str) -> str:
        """Why an applied, not undone action is not ``done`` now: a worker re-applies or reconciles it."""
        with self.app.store.session() as s:
            row = s.get(Action, action_id)
            if row is None or row.kind != "apply" or row.undone_at is not None or row.state in ("done", "failed"):
                return ""
            return f"{row.state} now, held by {row.owner or 'nobody'}; not read again here"

    def _undo_under_way(self, action_id: str) -> bool:
        with self.app.store.session() as s:
            return gate.release_under_way(s, action_id)

    # -- the site's own periodic read-back --------------------------------------------------------------------
    def reverify(self, interval: float) -> list[str]:
        """Read back this site's active containments, split between its workers (module docstring): each read
        is journaled as proof and a drift is audited (``containment.drift``, policy ``alert``: re-applying is the
        daemon's ``drift_policy``, which it asks for through a ``reapply`` read)."""
        from agent.proof import add_check, last_checks
        with self.app.store.session() as s:
            rows = list(s.scalars(select(Action).where(
                Action.site == self.site, Action.kind == "apply", Action.state == "done", Action.changed == 1,
                Action.mutating == 1, Action.undone_at.is_(None)).order_by(Action.seq)))
            for r in rows:
                s.expunge(r)
        seen = []
        for row in rows:
            if self.w.stopping.is_set():
                break
            with self.app.store.session() as s:
                if not s.scalar(text("SELECT pg_try_advisory_xact_lock(:c, :k)"),
                                {"c": _REVERIFY_LOCK, "k": _key(row.id)}):
                    continue  # another worker of the site reads it right now
                last = last_checks(self.app.store, [row.id]).get(row.id)
                if last is not None and (db_now(s) - last.at).total_seconds() < interval / 2:
                    continue  # read within half an interval (by a site-mate): not again
                try:
                    entry = self._entry(row.target_kind, row.target)
                except AgentError as exc:
                    add_check(s, row.id, "unverified", f"could not read {row.target}: {exc}", self.by("sweep"))
                    continue
                live = _live_args(self.app.store, row)
                state, summary, observed = self._read(row, entry, live)
                if self._moved(row.id, live):
                    continue  # a release under way removes it on purpose (or someone holds its gate): not drift
                add_check(s, row.id, state, summary, self.by("sweep"))
                if state == "drift":  # unreadable on a sweep is journaled, not audited: as before
                    self._audit(s, self._event(row, state, summary, observed, "sweep", "alert"))
            seen.append(state)
        return seen

    def sweep(self) -> list[str]:
        """Take over this site's reads whose worker died mid-read (lease expired): no message may come back. Give
        up reads still queued after ``workers.wait`` (their asker died between journaling and publishing: nobody
        waits for them). And forget settled reads after :data:`KEEP_READS` (the daemon asks for one per
        containment every ``reverify_interval``): what each read found stays in the journal as proof."""
        from sqlalchemy import delete
        with self.app.store.session() as s:
            now = db_now(s)
            ids = list(s.scalars(select(SiteRead.id).where(SiteRead.site == self.site, SiteRead.state == "running",
                                                          SiteRead.lease_until < now)))
            s.execute(update(SiteRead).where(
                SiteRead.site == self.site, SiteRead.state == "queued",
                SiteRead.created_at < now - timedelta(seconds=self.w.cfg.wait)).values(
                state="failed", done_at=now, error="never taken and nobody waits for it any more: given up"))
            s.execute(delete(SiteRead).where(SiteRead.site == self.site, SiteRead.state.in_(("done", "failed")),
                                             SiteRead.done_at < now - KEEP_READS))
        return [self.execute(read_id) for read_id in ids]


def _key(action_id: str) -> int:
    """A signed 32-bit advisory lock key for an action id."""
    return int.from_bytes(hashlib.blake2b(action_id.encode(), digest_size=4).digest(), "big", signed=True)


def _live_args(store: Any, row: Action) -> dict[str, Any]:
    """The row's args for its items still in effect (agent/drift.py reads the same): addresses of a batch
    unblocked one by one are not drift."""
    from agent.batching import active_items
    from agent.items import slice_for_undo
    found = active_items(store, action_ids=[row.id]).get(row.id)
    if found is None:
        return dict(row.args or {})
    fresh, items = found
    return slice_for_undo(fresh, items)[0]
