"""Statements per journal transition of a one-host action (issue 19, fan-out: each costs CPU in every pool
thread): the action's items are read once per transition that can change them — not for a host's snapshot (a
ruleset says nothing per item), and not a second time through the ``items`` relationship."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event

from agent.journal import Journal
from agent.store import Action, ActionItem, Store


class _Sink:
    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        return {}


def test_items_are_read_only_when_a_transition_can_change_them(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/j.db")
    journal = Journal(store, _Sink())
    journal.open_incident("INC-1", title="t", reason="r", requested_by="me", trigger="cli")
    row = Action(incident_id="INC-1", runbook="isolate-host", step="isolate", target="h01", connector="ssh_linux",
                 action="isolate", args={"confirm_seconds": 300}, state="intent")
    row.items = [ActionItem(position=0, kind="host", canonical="host:h01", requested="h01", state="intent")]
    journal.create(row)
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM action_items" in statement:
            reads.append(statement)
    event.listen(store.engine, "before_cursor_execute", count)
    per_transition = []
    for to_state, changes in (("snapshotted", {"snapshot": {"tool": "nft", "ruleset": "table inet f {}\n"}}),
                              ("applying", {}),
                              ("verifying", {"result": {"changed": True, "summary": "isolated"}, "changed": 1}),
                              ("done", {"verification": {"in_effect": True, "summary": "ok", "observed": {}}})):
        before = len(reads)
        journal.transition(row, to_state, "", **changes)
        per_transition.append(len(reads) - before)
    assert per_transition == [0, 0, 1, 1]
    item = journal.items_of(row.id)[0]
    assert (item.state, item.outcome, item.changed) == ("done", "changed", 1)  # the items still follow


def _rows(store: Store, action_id: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    from sqlalchemy import select

    from agent.store import Transition
    with store.engine.connect() as conn:
        action = dict(conn.execute(select(Action.__table__).where(Action.id == action_id)).mappings().one())
        log = [(r.from_state, r.to_state, r.detail) for r in conn.execute(
            select(Transition.__table__).where(Transition.action_id == action_id).order_by(Transition.id))]
    return action, log


def test_transitions_without_items_write_no_orm_flush_and_the_same_rows(tmp_path: Path) -> None:
    """The hot transitions of a fan-out (a host's ``snapshotted``, ``applying``) are written in SQLAlchemy Core —
    the ORM's unit of work cost ≈ 0.8 ms of CPU per write against ≈ 0.3 ms — and leave exactly the rows the ORM
    path leaves (compared with a fenced journal, which always takes the ORM path)."""
    from sqlalchemy.orm import Session

    results = []
    for fenced in (False, True):
        store = Store(f"sqlite:///{tmp_path}/{fenced}.db")
        journal = Journal(store, _Sink())
        journal.fenced = fenced
        journal.open_incident("INC-1", title="t", reason="r", requested_by="me", trigger="cli")
        row = Action(id="a1", incident_id="INC-1", runbook="isolate-host", step="isolate", target="h01",
                     connector="ssh_linux", action="isolate", args={"confirm_seconds": 300}, state="intent")
        row.items = [ActionItem(position=0, kind="host", canonical="host:h01", requested="h01", state="intent")]
        journal.create(row)
        flushes: list[int] = []

        def count(*_: Any, into: list[int] = flushes) -> None:
            into.append(1)
        event.listen(Session, "before_flush", count)
        try:
            journal.transition(row, "snapshotted", "read", snapshot={"tool": "nft", "ruleset": "table inet f {}\n"})
            journal.transition(row, "applying", "", attempts=1)
            hot = len(flushes)
            journal.transition(row, "verifying", "", result={"changed": True, "summary": "isolated"}, changed=1)
            journal.transition(row, "done", "", verification={"in_effect": True, "summary": "ok", "observed": {}})
        finally:
            event.remove(Session, "before_flush", count)
        action, log = _rows(store, "a1")
        results.append(({k: v for k, v in action.items() if k not in ("created_at", "updated_at", "owner")}, log,
                        action["updated_at"] == row.updated_at, hot))
        store.close()
    (fast, fast_log, fast_time, fast_flushes), (orm, orm_log, orm_time, orm_flushes) = results
    assert fast_flushes == 0 and orm_flushes == 2
    assert fast == orm and fast_log == orm_log and fast_time and orm_time
    assert fast["snapshot"] == {"tool": "nft", "ruleset": "table inet f {}\n"} and fast["attempts"] == 1
