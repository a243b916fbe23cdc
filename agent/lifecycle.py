"""One action's life in one place: :class:`ActionRunner` opens sessions, retries, maps errors, reads state after
failures and writes every transition. The engine (fresh runs), reconciliation (crashed runs) and the daemon's
re-verification (actions in doubt) all call it, so a fix to the lifecycle lands everywhere at once.

States (``agent.store``)::

    intent → snapshotted → applying → verifying → done
                                  ╰──────────────┴─→ in_doubt → (re-verified) → done | in_doubt
    any state before ``applying`` ─→ failed           (nothing was sent: the target is as it was)

The one rule: **once a change may have reached the target, the action is never "failed".** An error after the
``applying`` transition (timeout, connection reset, server gone after the request was written, verification
that does not show the effect, a bug in a connector) is answered by reading the target's state on a fresh
session: the effect is there → ``done``; otherwise (or unreadable) → ``in_doubt``. Only a refusal the target
itself answered to the apply (``Rejected``, ``AuthError``, ``InvalidInput``, ``HostKeyError``, ``TLSError``:
nothing changed) is ``failed`` after ``applying``.

Resolving an action left unfinished (dead owner) or in doubt — :meth:`ActionRunner.resolve` — always verifies
first, and never takes a new snapshot of a target that may already be changed: the journaled one (taken before
anything was sent) is the state to restore. Effect present → done, not applied again; absent → applied once
from the journaled snapshot (undo: undone once) and verified. An undo of an effect in parts
(``ActionSpec.undo_in_parts``: memberships of several groups, a batch of accounts) is completed from the snapshot
even when the effect is gone: one part put back already lifts it, so "not in effect" cannot say the rest is.
Rows are claimed by compare-and-swap on (state, owner) first, so two processes never resolve the same action.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from agent.config import Settings
from agent.errors import AgentError
from agent.failpoints import failpoint
from agent.journal import Journal
from agent.outcomes import IN_DOUBT, REFUSALS, ActionOutcome, Interrupted, Resolution
from agent.plan import PlannedAction
from agent.registry import Registry
from agent.sessions import Job, SessionCache, changed_when_found
from agent.store import Action
from connectors.base import Session
from connectors.errors import ConnectorError, VerifyFailed
from connectors.types import ActionResult, ConnectorContext, Snapshot, Target, Verification

__all__ = ["ActionRunner"]

T = TypeVar("T")


class ActionRunner:
    """The single owner of the action lifecycle (see the module docstring for the rules)."""

    def __init__(self, settings: Settings, registry: Registry, ctx: ConnectorContext, journal: Journal, *,
                 cancel: threading.Event | None = None,
                 evidence_sink: Callable[..., list[dict[str, Any]]] | None = None) -> None:
        self.settings, self.registry, self.ctx, self.journal = settings, registry, ctx, journal
        self.cancel = cancel or threading.Event()
        self.evidence_sink = evidence_sink

    def sessions(self) -> SessionCache:
        return SessionCache(self.registry, self.ctx)

    # -- a fresh run ----------------------------------------------------------------------------------------
    def run(self, pa: PlannedAction, row: Action, sessions: SessionCache) -> ActionOutcome:
        """Run one planned action whose intent is journaled; never raises for a connector's failure."""
        job = Job(row, pa.connector, pa.target, pa.entry, pa.action, dict(pa.args), sessions)
        out = ActionOutcome(subject=pa.subject, step=pa.step.id, target=pa.target.name, action=pa.action,
                            kind=row.kind, state="failed", action_id=row.id)
        sent = False
        try:
            failpoint("after-intent")
            session = self._retry(lambda: sessions.get(job.connector, job.target, job.entry), job)
            if row.kind == "undo":
                sent = True  # the undo's first transition is 'applying'
                res = self._undo(job, session, Snapshot(dict(pa.snapshot or {})), "undo from journaled snapshot")
            elif not pa.spec.mutating:
                res = self._read_only(job, session)
            else:
                failpoint("before-snapshot")
                snap = self._retry(lambda: job.conn.snapshot(session, job.action, job.args), job)
                failpoint("after-snapshot")
                self.journal.transition(row, "snapshotted", "state needed to undo recorded", snapshot=snap.to_dict())
                sent = True
                res = self._apply_and_verify(job, session, snap, "applying", "")
            out.state, out.changed, out.summary, out.warnings = "done", bool(res.changed), res.summary, res.warnings
        except Interrupted:
            raise
        except Exception as exc:  # noqa: BLE001 - a failure on one target never escapes it
            self._settle(job, exc, sent, out)
        return out

    def _apply_and_verify(self, job: Job, session: Session, snap: Snapshot, state: str,
                          detail: str) -> ActionResult:
        row = job.row
        if row.state != state:
            self.journal.transition(row, state, detail)
        failpoint("before-apply")
        res = self._apply(job, session, snap)
        failpoint("after-apply")
        # once this action changed the target it stays "changed": an apply again from its own snapshot (a
        # resolution, a drift re-apply) that finds its change already there must not make undo skip it
        changed = max(int(res.changed), row.changed or 0)
        self.journal.transition(row, "verifying", res.summary, result=res.to_dict(), changed=changed,
                                attempts=job.attempts[0])
        failpoint("before-verify")
        ver = self._retry(lambda: job.conn.verify(session, job.action, job.args), job)
        failpoint("after-verify")
        if not ver.in_effect:
            raise VerifyFailed(f"applied but not in effect: {ver.summary}")
        self.journal.transition(row, "done", detail or ver.summary, verification=ver.to_dict())
        return res

    def _undo(self, job: Job, session: Session, snap: Snapshot, detail: str, *, settled: str = "",
              changed: int = 0) -> ActionResult:
        """Undo from ``snap`` and verify. A resolution passes how it got here (``settled``, journaled with the
        outcome) and ``changed`` = 1 when an earlier attempt may have sent part of the undo: completing it may
        then find nothing left to send, yet the undo did change the target."""
        row = job.row
        if row.state != "applying":
            self.journal.transition(row, "applying", detail)
        res: ActionResult = self._retry(lambda: job.conn.undo(session, job.action, job.args, snap), job)
        failpoint("after-undo")
        self.journal.transition(row, "verifying", res.summary, result=res.to_dict(),
                                changed=max(int(res.changed), changed), attempts=job.attempts[0])
        failpoint("before-verify")
        ver = self._retry(lambda: job.conn.verify(session, job.action, job.args), job)
        failpoint("after-verify")
        if ver.in_effect:
            raise VerifyFailed(f"still in effect after undo: {ver.summary}")
        self.journal.transition(row, "done", f"{settled}: {ver.summary}" if settled else ver.summary,
                                verification=ver.to_dict())
        self.journal.mark_undone(row.undo_of or "", row.id)
        return res

    def _read_only(self, job: Job, session: Session) -> ActionResult:
        row = job.row
        self.journal.transition(row, "applying", "read-only action")
        res: ActionResult = self._retry(lambda: job.conn.apply(session, job.action, job.args, Snapshot()), job)
        details = dict(res.details)
        evidence = details.pop("evidence", None)
        # a capture that failed entirely still reaches the sink, which audits each failure
        if (evidence is not None or details.get("errors")) and self.evidence_sink:
            try:
                details["evidence_files"] = self.evidence_sink(row.incident_id, job.target.name, evidence or {},
                                                               details.get("errors") or {})
            except Exception as exc:  # noqa: BLE001 - storing evidence must never block containment
                details["evidence_error"] = f"could not store evidence: {type(exc).__name__}: {exc}"
                res.warnings.append(details["evidence_error"])
        res.details = details
        self.journal.transition(row, "done", res.summary, result=res.to_dict(), changed=0,
                                attempts=job.attempts[0])
        return res

    def _apply(self, job: Job, session: Session, snap: Snapshot) -> ActionResult:
        """Apply; after a transient error read the target's state (fresh session) before sending it again.

        Why (lesson 6): a timeout or a reset may come after the change landed. Applying again from the same,
        journaled snapshot is safe (connectors' apply is idempotent); a new snapshot never is.
        """
        for attempt in range(1, self.settings.retries + 1):
            job.attempts[0] += 1
            try:
                res: ActionResult = job.conn.apply(session, job.action, job.args, snap)
                return res
            except ConnectorError as exc:
                if not exc.transient:
                    raise
                error = exc
            ver = self._read_back(job)
            if ver is not None and ver.in_effect:
                return ActionResult(changed=True, summary=f"applied (confirmed by reading state after: "
                                    f"{error.message}): {ver.summary}")
            if ver is None or attempt == self.settings.retries:
                # unreadable: the apply's own account of where it stopped (ssh_linux: "in doubt: isolated but
                # unconfirmed, the timer lifts it at ...") is the most exact one there is
                raise error
            self._sleep(self.settings.backoff * 2 ** (attempt - 1))
            session = self._retry(lambda: job.sessions.fresh(job.connector, job.target, job.entry), job)
        raise AssertionError("unreachable")

    # -- errors ---------------------------------------------------------------------------------------------
    def _settle(self, job: Job, exc: Exception, sent: bool, out: ActionOutcome) -> None:
        """Journal the end of a run that raised: failed if nothing can have changed, else read state or doubt."""
        row = job.row
        if isinstance(exc, ConnectorError):
            exc.with_context(target=job.target.name, connector=job.connector, action=job.action)
            message, kind = exc.message, exc.kind
            text = str(exc)
        else:
            message = f"internal error in {job.connector}.{job.action}: {type(exc).__name__}: {exc}"
            kind, text = "internal", message
        out.error, out.error_kind = text, kind
        refused = isinstance(exc, REFUSALS) and row.state == "applying"
        if not sent or refused or not row.mutating:
            self.journal.transition(row, "failed", message, error=text, error_kind=kind, attempts=job.attempts[0])
            transient = isinstance(exc, ConnectorError) and exc.transient
            out.summary = ("target unreachable after retries" if transient else "failed") + f": {message}"
            return
        ver = self._read_back(job)
        want = row.kind == "apply"
        # an undo of an effect in parts that broke part-way: the effect gone does not say every part is back
        partial = not want and ver is not None and not ver.in_effect and self._undo_in_parts(row)
        if ver is not None and ver.in_effect == want and not partial:
            detail = f"{'applied' if want else 'undone'} (confirmed by reading state after: {message})"
            self.journal.transition(row, "done", detail, verification=ver.to_dict(), attempts=job.attempts[0],
                                    **({"changed": changed_when_found(job)} if row.changed is None else {}))
            if not want:
                self.journal.mark_undone(row.undo_of or "", row.id)
            out.state, out.changed, out.summary, out.error, out.error_kind = "done", True, detail, None, None
            return
        seen = "the state could not be read back" if ver is None else f"the target shows: {ver.summary}"
        if partial:
            seen += " (an undo in parts that stopped part-way: what is still missing is restored when re-verified)"
        detail = f"in doubt: {message}; {seen} — re-verified until known"
        self.journal.transition(row, IN_DOUBT, detail, error=text, error_kind=kind, attempts=job.attempts[0])
        out.state, out.summary = IN_DOUBT, f"in doubt — verifying: {message}"

    def _read_back(self, job: Job) -> Verification | None:
        """The target's state read on a fresh session (the old one may be what failed); None if unreadable.

        One attempt, no backoff: the caller decides what to do when the target does not answer.
        """
        if job.unreadable:
            return None
        try:
            session = job.sessions.fresh(job.connector, job.target, job.entry)
            ver: Verification = job.conn.verify(session, job.action, job.args)
            return ver
        except Interrupted:
            raise
        except Exception:  # noqa: BLE001 - unreadable: the action stays in doubt, which is the truth
            job.unreadable = True
            return None

    def _retry(self, fn: Callable[[], T], job: Job) -> T:
        for attempt in range(1, self.settings.retries + 1):
            job.attempts[0] += 1
            try:
                return fn()
            except ConnectorError as exc:
                if not exc.transient or attempt == self.settings.retries:
                    raise
            self._sleep(self.settings.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Interrupted("cancelled")

    # -- unfinished and in-doubt actions --------------------------------------------------------------------
    def resolve(self, row: Action, entry: Any) -> Resolution:
        """Finish an action a dead process left mid-way, or settle one in doubt — verify first, never twice."""
        from_state = row.state
        out = Resolution(row.id, row.target, row.action, row.kind, from_state, "pending", "")
        if not self.journal.claim(row):
            out.outcome, out.detail = "skipped", "being resolved by another process"
            return out
        self.journal.audit.record("reconcile.start", incident=row.incident_id, action_id=row.id, target=row.target,
                                  action=row.action, kind=row.kind, state=from_state)
        if not row.mutating:
            out.outcome, out.detail = "failed", "interrupted read-only action; nothing to reconcile on the target"
            self.journal.transition(row, "failed", out.detail, error=out.detail, error_kind="interrupted")
            return out
        target: Target = entry.target(row.address or None)
        sessions = self.sessions()
        job = Job(row, row.connector, target, entry, row.action, dict(row.args or {}), sessions)
        try:
            if from_state == IN_DOUBT:
                self.journal.transition(row, "verifying", "re-verifying an action in doubt")
            session = self._retry(lambda: sessions.get(job.connector, target, entry), job)
            ver = self._retry(lambda: job.conn.verify(session, job.action, job.args), job)
            want = row.kind == "apply"
            # an undo of an effect in parts, no longer in effect: maybe only some parts are back — complete it
            partial = not want and not ver.in_effect and self._undo_in_parts(row)
            if ver.in_effect == want and not partial:
                what = "was in doubt" if from_state == IN_DOUBT else f"after interruption in state {from_state}"
                detail = (f"reconciled {what}: target shows the {'change' if want else 'undo'} in effect; "
                          "not re-applied")
                sent = from_state in ("applying", "verifying", IN_DOUBT)  # before 'applying' nothing was sent
                self.journal.transition(row, "done", detail, verification=ver.to_dict(),
                                        changed=changed_when_found(job) if sent else 0)
                if not want:
                    self.journal.mark_undone(row.undo_of or "", row.id)
            elif want:
                detail = self._finish_apply(job, session, from_state)
            else:
                detail = f"reconciled: interrupted undo completed from the journaled snapshot (was {from_state})"
                if partial:
                    detail += ("; the change was no longer in effect, but an undo in parts may have stopped "
                               "part-way: what was still missing was restored")
                sent = from_state in ("applying", "verifying", IN_DOUBT)
                self._undo(job, session, Snapshot(dict(row.snapshot or {})), "completing interrupted undo",
                           settled=detail, changed=changed_when_found(job) if sent else 0)
            out.outcome, out.detail = "done", detail
        except Interrupted:
            raise
        except ConnectorError as exc:
            out.outcome, out.detail = self._unresolved(job, exc, from_state)
        except AgentError as exc:
            out.outcome, out.detail = "failed", f"reconciliation failed: {exc}"
            self.journal.transition(row, "failed", out.detail, error=str(exc), error_kind="config")
        except Exception as exc:  # noqa: BLE001 - a connector bug leaves the action in doubt, not lost
            out.outcome, out.detail = self._unresolved(job, exc, from_state)
        finally:
            sessions.close_all()
        return out

    def reapply(self, row: Action, entry: Any, why: str, *, args: Mapping[str, Any] | None = None,
                snapshot: Mapping[str, Any] | None = None) -> Resolution:
        """Drift: ``row`` is done but no longer (wholly) in effect. Apply it again *in place*, from its journaled
        snapshot (``args``/``snapshot``: narrowed to the items still live), and verify.

        Why never a new snapshot (or a new planned action): the target is partly changed by this very action — 49
        of 50 accounts still disabled, 19 of 20 addresses still blocked — and a snapshot of that records them as
        "already so", which every later undo then leaves alone. The same row keeps its TTL and its undo.
        Nothing sent (target unreachable) → the row stays done and drifted; the target refused → the same,
        with the refusal recorded; anything after sending → ``in_doubt`` (re-verified, then completed from the
        same snapshot).
        """
        out = Resolution(row.id, row.target, row.action, row.kind, row.state, "pending", "")
        if row.snapshot is None or row.kind != "apply" or row.state != "done":
            out.outcome, out.detail = "skipped", f"not re-applied: {row.kind} in state {row.state}, no snapshot"
            return out
        target: Target = entry.target(row.address or None)
        sessions = self.sessions()
        job = Job(row, row.connector, target, entry, row.action, dict(row.args if args is None else args), sessions)
        detail = f"re-applied after drift ({why}) from the journaled snapshot"
        snap = Snapshot(dict(row.snapshot if snapshot is None else snapshot))
        try:
            session = self._retry(lambda: sessions.get(job.connector, target, entry), job)
            self._apply_and_verify(job, session, snap, "applying", detail)
            out.outcome, out.detail = "done", detail
        except Interrupted:
            raise
        except Exception as exc:  # noqa: BLE001 - a failure on one target never escapes it
            message = exc.message if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"
            if row.state == "done":  # the session could not be opened: nothing was sent
                out.outcome, out.detail = "pending", f"not re-applied, target unreachable: {message}"
            elif isinstance(exc, REFUSALS) and row.state == "applying":
                out.outcome, out.detail = "failed", f"re-apply refused by the target: {message}; still drifted"
                self.journal.transition(row, "done", out.detail)
            else:
                result = ActionOutcome(subject=row.subject or "", step=row.step, target=row.target,
                                       action=row.action, kind=row.kind, state="failed", action_id=row.id)
                self._settle(job, exc, True, result)
                out.outcome, out.detail = result.state, result.summary
        finally:
            sessions.close_all()
        return out

    def _undo_in_parts(self, row: Action) -> bool:
        """Does ``row``'s action declare an effect its undo puts back in parts (``ActionSpec.undo_in_parts``)?"""
        spec = self.registry.spec(row.connector, row.action)
        return spec is not None and spec.undo_in_parts

    def _finish_apply(self, job: Job, session: Session, from_state: str) -> str:
        """The effect is absent: apply once — from the journaled snapshot when one exists (never re-snapshot)."""
        row = job.row
        if row.snapshot is not None:
            snap = Snapshot(dict(row.snapshot))
        else:  # interrupted before its snapshot was journaled: nothing was sent, the target is as it was
            snap = self._retry(lambda: job.conn.snapshot(session, job.action, job.args), job)
            self.journal.transition(row, "snapshotted", "snapshot taken during reconciliation",
                                    snapshot=snap.to_dict())
        what = "was in doubt" if from_state == IN_DOUBT else f"interrupted in state {from_state}"
        detail = f"reconciled: {what}; the change was not in effect; applied once"
        self._apply_and_verify(job, session, snap, "applying", detail)
        return detail

    def _unresolved(self, job: Job, exc: Exception, from_state: str) -> tuple[str, str]:
        """Resolution failed: in doubt if a change may be on the target, else failed (refused) or pending."""
        row = job.row
        message = exc.message if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"
        kind = exc.kind if isinstance(exc, ConnectorError) else "internal"
        if from_state in ("applying", "verifying", IN_DOUBT) or row.state in ("applying", "verifying"):
            detail = f"in doubt: {message} — re-verified until known"
            self.journal.transition(row, IN_DOUBT, detail, error=str(exc), error_kind=kind)
            return IN_DOUBT, detail
        if isinstance(exc, REFUSALS):  # nothing was sent, and retrying cannot help
            detail = f"reconciliation failed: {message}"
            self.journal.transition(row, "failed", detail, error=str(exc), error_kind=kind)
            return "failed", detail
        self.journal.audit.record("reconcile.pending", incident=row.incident_id, action_id=row.id,
                                  target=row.target, error=str(exc))
        return "pending", f"target unreachable, will retry on next start: {message}"

    def read_state(self, row: Action, entry: Any, *, args: Mapping[str, Any] | None = None,
                   sessions: SessionCache | None = None, patient: bool = True) -> Verification:
        """Read whether ``row``'s effect is in place now (drift re-verification, ``status --verify``).

        ``args``: the row's arguments narrowed to the items still in effect (a batch undone in part);
        ``sessions``: a cache the caller shares across rows (and closes); ``patient=False``: one attempt, no
        backoff (an interactive check reports an unreachable target instead of waiting for it). Raises
        ConnectorError when the target cannot be read.
        """
        target: Target = entry.target(row.address or None)
        own = sessions is None
        cache = self.sessions() if sessions is None else sessions
        job = Job(row, row.connector, target, entry, row.action, dict(row.args if args is None else args), cache)
        try:
            if not patient:
                session = cache.get(job.connector, target, entry)
                ver: Verification = job.conn.verify(session, job.action, job.args)
                return ver
            session = self._retry(lambda: cache.get(job.connector, target, entry), job)
            ver = self._retry(lambda: job.conn.verify(session, job.action, job.args), job)
            return ver
        finally:
            if own:
                cache.close_all()
