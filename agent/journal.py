"""Journal writes: each action state transition is committed to the store *and* the audit log before the next.

One place does both so the two can never disagree about what happened, and so no caller forgets either.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import bindparam, insert, select, update

from agent.errors import AgentError
from agent.items import on_transition, touches_items, undone_items
from agent.runctx import current_owner
from agent.store import Action, ActionItem, Incident, Store, Transition, utcnow

if TYPE_CHECKING:
    from agent.progress import Transition as Transition_

__all__ = ["AuditSink", "Journal", "JournalUnavailable"]


T = TypeVar("T")
JOURNAL_WAIT = 60.0


class JournalUnavailable(AgentError):
    """The shared journal stayed unreachable: the write was not recorded (and nothing after it was done)."""


def _unreachable(exc: Exception) -> bool:
    """A lost or refused database connection (as opposed to a bad statement)."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class AuditSink(Protocol):
    def record(self, event: str, **fields: Any) -> dict[str, Any]: ...


@cache
def _core_statements(keys: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """The read, update and insert of a transition written without the ORM (:meth:`Journal.transition`), built
    once per set of changed columns: a statement built afresh for each write costs more in coercion and cache
    keys than the ORM's unit of work it replaces."""
    actions, log = Action.__table__.c, Transition.__table__.c
    read = select(actions.state, actions.updated_at).where(actions.id == bindparam("v_id"))
    write = update(Action).where(actions.id == bindparam("v_id")).values(
        {key: bindparam(f"v_{key}", type_=actions[key].type) for key in ("state", "updated_at", "owner", *keys)})
    insert_log = insert(Transition).values(
        action_id=bindparam("v_id", type_=log.action_id.type),
        from_state=bindparam("v_from", type_=log.from_state.type), to_state=bindparam("v_to", type_=log.to_state.type),
        at=bindparam("v_at", type_=log.at.type), detail=bindparam("v_detail", type_=log.detail.type))
    return read, write, insert_log


class Journal:
    def __init__(self, store: Store, audit: AuditSink) -> None:
        self.store, self.audit = store, audit
        self.owner = str(current_owner())  # per journal (one per command or daemon), never per import
        # Called after each committed transition (live progress, --events): they see what the journal says.
        self.observers: list[Callable[[Transition_], None]] = []

    #: seconds a shared journal may be unreachable before a write gives up (the write is retried meanwhile)
    wait = JOURNAL_WAIT
    #: a per-site worker's journal (agent.workers.worker) locks the row and checks its lease in each transition
    fenced = False

    def fence(self, s: Any, db: Action) -> None:
        """Refuse a transition this journal may no longer write (overridden by the workers' fenced journal)."""

    def _notify(self, row: Action, from_state: str, to_state: str, detail: str) -> None:
        if not self.observers:
            return
        from agent.progress import Transition as Event
        event = Event(incident=row.incident_id, action_id=row.id, target=row.target, step=row.step,
                      action=row.action, kind=row.kind, from_state=from_state, to_state=to_state, detail=detail)
        for observer in list(self.observers):
            observer(event)

    def _durably(self, what: str, body: Callable[[], T]) -> T:
        """Run one journal write; while a shared (PostgreSQL) journal is unreachable, retry it for up to
        :attr:`wait` seconds, then raise :class:`JournalUnavailable`. Each write is one transaction, so a try
        that failed left nothing half-written; the bodies are idempotent for a commit whose answer was lost."""
        if self.store.engine.dialect.name != "postgresql":
            return body()
        deadline, delay = time.monotonic() + self.wait, 0.2
        while True:
            try:
                return body()
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                if time.monotonic() > deadline:
                    cause = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
                    raise JournalUnavailable(f"the journal database is unreachable; {what} not recorded after "
                                             f"{self.wait:g}s of retries ({cause})") from None
            time.sleep(delay)
            delay = min(2.0, delay * 2)

    def create(self, row: Action) -> Action:
        row.owner = self.owner
        row.id = row.id or str(uuid.uuid4())

        def body() -> None:
            with self.store.session() as s:
                if s.get(Action, row.id) is not None:  # a retry after a commit whose answer was lost
                    return
                row.seq = self.store.next_seq(s)
                s.add(row)
                s.add(Transition(action_id=row.id, from_state="", to_state=row.state, detail="intent recorded"))
                if self.in_transaction:
                    with self.audit.bound(s):  # type: ignore[attr-defined]
                        self._record_intent(row)
        self._durably(f"the intent of {row.action} on {row.target}", body)
        if not self.in_transaction:
            self._record_intent(row)
        self._notify(row, "", row.state, "intent recorded")
        return row

    @property
    def in_transaction(self) -> bool:
        """Does the audit sink queue records in the journal's own transaction (agent.audit.outbox: a process
        that does not own the audit chain)? Then a transition and its records commit together or not at all."""
        return bool(getattr(self.audit, "transactional", False))

    def _record_intent(self, row: Action) -> None:
        self.audit.record("action.intent", incident=row.incident_id, action_id=row.id, kind=row.kind,
                          undo_of=row.undo_of, target=row.target, address=row.address, connector=row.connector,
                          action=row.action, args=row.args, runbook=row.runbook, step=row.step,
                          requested_by=row.requested_by, approved_by=row.approved_by, reason=row.reason)

    def transition(self, row: Action, to_state: str, detail: str = "", **changes: Any) -> Action:
        """Persist ``row`` moving to ``to_state`` (plus column changes) and audit it, in that order."""
        from_state = row.state
        now = utcnow()

        def body() -> list[dict[str, Any]]:
            with self.store.session() as s:
                db = s.get(Action, row.id, with_for_update=self.fenced)
                assert db is not None
                if db.state == to_state and db.updated_at == now:  # a retry after a commit whose answer was lost
                    return []
                self.fence(s, db)
                db.state = to_state
                db.updated_at = now
                db.owner = self.owner
                for key, value in changes.items():
                    setattr(db, key, value)
                s.add(Transition(action_id=row.id, from_state=from_state, to_state=to_state, at=now,
                                 detail=detail))
                items = on_transition(s, db, from_state, to_state, changes)
                if self.in_transaction:
                    with self.audit.bound(s):  # type: ignore[attr-defined]
                        self.record_transition(db, from_state, to_state, detail, changes, items)
                return items

        def core() -> list[dict[str, Any]]:
            # body()'s writes in SQLAlchemy Core for a transition that touches no item, in a journal that neither
            # fences rows nor queues audit records in its own transaction: the hot ones of a fan-out (a host's
            # snapshotted, applying). Same single committed transaction, same check for a retry after a commit
            # whose answer was lost; 0.78-0.83 -> 0.27-0.34 ms of CPU per write (no unit of work, identity map,
            # attribute events). tests/unit/test_journal_queries.py: the same rows as the ORM's.
            read, write, log = _core_statements(tuple(sorted(changes)))
            with self.store.engine.begin() as conn:
                current = conn.execute(read, {"v_id": row.id}).one()
                if current.state == to_state and current.updated_at == now:
                    return []
                conn.execute(write, {"v_id": row.id, "v_state": to_state, "v_updated_at": now, "v_owner": self.owner,
                                     **{f"v_{key}": value for key, value in changes.items()}})
                conn.execute(log, {"v_id": row.id, "v_from": from_state, "v_to": to_state, "v_at": now,
                                   "v_detail": detail})
            return []
        fast = not self.fenced and not self.in_transaction and not touches_items(row, to_state, changes) \
            and all(key in Action.__table__.c for key in changes)
        items = self._durably(f"{row.action} on {row.target} -> {to_state}", core if fast else body)
        row.state, row.updated_at = to_state, now
        for key, value in changes.items():
            setattr(row, key, value)
        if not self.in_transaction:
            self.record_transition(row, from_state, to_state, detail, changes, items)
        self._notify(row, from_state, to_state, detail)
        return row

    def record_transition(self, row: Action, from_state: str, to_state: str, detail: str,
                          changes: dict[str, Any], items: list[dict[str, Any]], **extra: Any) -> None:
        """The audit records of one transition (after its commit; or inside it when :attr:`in_transaction`)."""
        fields: dict[str, Any] = {"incident": row.incident_id, "action_id": row.id, "target": row.target,
                                  "connector": row.connector, "action": row.action, "kind": row.kind,
                                  "from_state": from_state, "to_state": to_state, "detail": detail, **extra}
        for key in ("result", "verification", "error", "error_kind", "changed", "attempts"):
            if key in changes:
                fields[key] = changes[key]
        if len(items) > 1:  # a batch: what happened to each account/address is part of the record
            fields["items"] = items
        self.audit.record("action.transition", **fields)
        if to_state == "done":
            self.audit.record("action.undone" if row.kind == "undo" else "action.done",
                              incident=row.incident_id, action_id=row.id, undo_of=row.undo_of,
                              target=row.target, action=row.action, changed=row.changed,
                              verification=row.verification, runbook=row.runbook)
        elif to_state == "in_doubt":
            self.audit.record("action.in_doubt", incident=row.incident_id, action_id=row.id, target=row.target,
                              action=row.action, kind=row.kind, error=row.error, error_kind=row.error_kind,
                              detail=detail)
        elif to_state == "failed":
            self.audit.record("action.failed", incident=row.incident_id, action_id=row.id, target=row.target,
                              action=row.action, kind=row.kind, error=row.error, error_kind=row.error_kind)

    def claim(self, row: Action) -> bool:
        """Take over ``row`` for resolution: compare-and-swap on (state, owner), so only one process wins."""
        from sqlalchemy import update
        with self.store.session() as s:
            result = s.execute(update(Action).where(Action.id == row.id, Action.state == row.state,
                                                    Action.owner == row.owner).values(owner=self.owner))
            won = getattr(result, "rowcount", 0) == 1
        if won:
            row.owner = self.owner
        return won

    def mark_undone(self, original_id: str, by_action: str) -> None:
        """Record that ``by_action`` undid ``original_id`` — per item: the action counts as undone only when
        every item it changed was restored (``enable-account B`` out of ``disable-account A B C`` leaves it
        active for A and C). An action in doubt that is undone is settled: possibly applied, now restored."""
        with self.store.session() as s:
            db = s.get(Action, original_id)
            if db is not None and db.undone_at is None:
                now = utcnow()
                if not undone_items(s, db, by_action, now):
                    s.add(Transition(action_id=original_id, from_state=db.state, to_state=db.state,
                                     detail=f"some items undone by {by_action}"))
                    return
                db.undone_at = now
                to_state = "done" if db.state == "in_doubt" else db.state
                detail = (f"undone by {by_action}" if to_state == db.state else
                          f"was in doubt (possibly applied); undone from its snapshot by {by_action}")
                s.add(Transition(action_id=original_id, from_state=db.state, to_state=to_state, detail=detail))
                db.state = to_state

    def items_of(self, action_id: str) -> list[ActionItem]:
        from sqlalchemy import select
        with self.store.session() as s:
            return list(s.scalars(select(ActionItem).where(ActionItem.action_id == action_id)
                                  .order_by(ActionItem.position)))

    def open_incident(self, incident_id: str, *, title: str, reason: str, requested_by: str, trigger: str,
                      discovered_at: datetime | None = None) -> Incident:
        with self.store.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is not None:
                return inc
            inc = Incident(id=incident_id, title=title, reason=reason, requested_by=requested_by,
                           trigger=trigger, discovered_at=discovered_at or utcnow())
            s.add(inc)
        self.audit.record("incident.opened", incident=incident_id, title=title, reason=reason,
                          requested_by=requested_by, trigger=trigger, discovered_at=inc.discovered_at.isoformat())
        return inc

    def update_incident(self, incident_id: str, **changes: Any) -> None:
        with self.store.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is None:
                return
            for key, value in changes.items():
                setattr(inc, key, value)
        self.audit.record("incident.updated", incident=incident_id,
                          **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()})
        if "contained_at" in changes:
            self.audit.record("incident.contained", incident=incident_id,
                              contained_at=changes["contained_at"].isoformat())
