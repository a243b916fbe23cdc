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
