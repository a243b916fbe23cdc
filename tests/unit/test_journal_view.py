"""agent/journal_view.py reads the journal the mapped models wrote, the same way they read it: same columns, same
summaries, same UTC times, same rows — on SQLite through sqlite3 when the journal is at the schema head, through
the store otherwise. (Why it exists: tests/unit/test_status_startup.py.)"""

from __future__ import annotations

import dataclasses
import sqlite3
import types
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.journal_view import ActionRow, ItemRow, JournalView, open_view
from agent.migrations import HEAD
from agent.migrations.runner import SchemaError
from agent.store import Action, ActionItem, Incident, Store, Transition


def _nullable(tp: object) -> bool:
    return isinstance(tp, types.UnionType) and type(None) in typing.get_args(tp)


@pytest.mark.parametrize(("row", "model"), [(ActionRow, Action), (ItemRow, ActionItem)])
def test_row_fields_are_the_models_columns(row: type, model: type) -> None:
    columns = model.__table__.columns  # type: ignore[attr-defined]
    hints = typing.get_type_hints(row)
    for f in dataclasses.fields(row):
        if f.name == "items":
            continue
        assert f.name in columns, f"{row.__name__}.{f.name} is not a column of {columns}"
        assert _nullable(hints[f.name]) == bool(columns[f.name].nullable), f.name


def _write(url: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Rows through the ORM; returns their summaries as the ORM gives them."""
    store = Store(url)
    now = datetime(2026, 12, 4, 21, 0, 5, 120000, tzinfo=UTC)
    try:
        with store.session() as s:
            s.add(Incident(id="INC-V", title="t"))
            s.flush()
            a = Action(incident_id="INC-V", seq=1, runbook="block-ip", step="block", target="edge o'brien",
                       subject="203.0.113.7", target_kind="device", connector="firewall", action="block_ip",
                       state="done", changed=1, expires_at=now + timedelta(hours=1), created_at=now,
                       updated_at=now, result={"details": {"n": 2}, "note": "ünïcode"}, verification=None)
            b = Action(incident_id="INC-V", seq=2, runbook="isolate-host", step="isolate", target="web1",
                       connector="ssh_linux", action="isolate", state="in_doubt", error="lost", created_at=now,
                       updated_at=now)
            s.add_all([a, b])
            s.flush()
            s.add_all([ActionItem(action_id=a.id, position=1, kind="address", canonical="net:203.0.113.8/32",
                                  requested="203.0.113.8", state="done", changed=1, undone_at=now,
                                  verification={"present": False}),
                       ActionItem(action_id=a.id, position=0, kind="address", canonical="net:203.0.113.7/32",
                                  requested="203.0.113.7", state="done", changed=1)])
            s.add(Transition(action_id=a.id, from_state="verifying", to_state="done", at=now, detail="ok"))
        with store.session() as s:
            rows = [s.get(Action, a.id), s.get(Action, b.id)]
            summaries = [r.summary() for r in rows if r is not None]
            items = [i.summary() for r in rows if r is not None for i in r.items]
    finally:
        store.close()
    return summaries, items


def test_view_reads_what_the_models_wrote(tmp_path: Path) -> None:
    db = tmp_path / "o'brien #1" / "agent.db"  # "#" ends a sqlite URI's path: escaped, not refused
    summaries, items = _write(f"sqlite:///{db}")
    opened: list[str] = []
    view = open_view(f"sqlite:///{db}", lambda: opened.append("store") or Store(f"sqlite:///{db}"))
    try:
        contained, doubtful = view.contained(), view.in_doubt()
        assert opened == []  # at the head: sqlite3, not the store
        assert [r.summary() for r in (*contained, *doubtful)] == summaries
        assert [i.summary() for i in contained[0].items] == items  # position order, as the relationship
        assert contained[0].expires_at is not None and contained[0].expires_at.tzinfo is not None
        assert contained[0].result == {"details": {"n": 2}, "note": "ünïcode"}
        assert view.unfinished() == []
        [(action_id, from_state, at, detail)] = view.done_transitions([contained[0].id])
        assert (action_id, from_state, detail) == (contained[0].id, "verifying", "ok")
        assert at == datetime(2026, 12, 4, 21, 0, 5, 120000, tzinfo=UTC)
    finally:
        view.close()


def test_missing_unknown_or_oddly_named_journal_goes_through_the_store(tmp_path: Path) -> None:
    """A journal that does not exist is created by the store (as every command did); one at another revision is
    the store's to upgrade or refuse; a path SQLAlchemy reads differently from its text ("%41" is "A" to it) is
    left to SQLAlchemy. None of them is read by sqlite3 behind the migrations' back."""
    db = tmp_path / "agent.db"
    stores: list[Store] = []
    calls: list[str] = []

    def store() -> Store:
        calls.append(str(db))
        stores.append(Store(f"sqlite:///{db}"))
        return stores[-1]

    view = open_view(f"sqlite:///{db}", store)
    assert view.contained() == [] and len(stores) == 1
    view.close()
    stores[0].close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_a_newer_agent'")
    with pytest.raises(SchemaError, match="newer agent"):  # refused untouched, as the store always did
        open_view(f"sqlite:///{db}", store)
    assert len(calls) == 2

    odd = tmp_path / "100%41" / "agent.db"
    (tmp_path / "100A").mkdir()
    view = open_view(f"sqlite:///{odd}", lambda: stores.append(Store(f"sqlite:///{odd}")) or stores[-1])
    view.close()
    stores[-1].close()
    assert len(stores) == 2 and (tmp_path / "100A" / "agent.db").exists()  # SQLAlchemy opened .../100A/agent.db


def test_of_store_is_the_same_queries(tmp_path: Path) -> None:
    summaries, _items = _write(f"sqlite:///{tmp_path / 'agent.db'}")
    store = Store(f"sqlite:///{tmp_path / 'agent.db'}")
    view = JournalView.of_store(store)
    try:
        assert [r.summary() for r in (*view.contained(), *view.in_doubt())] == summaries
    finally:
        view.close()
        store.close()
    assert HEAD
