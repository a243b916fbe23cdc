"""Multi-row INSERT/UPDATE statements (agent.intake.bulk) store exactly what the ORM stores, in few statements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from agent.intake import bulk
from agent.intake.bulk import BulkTable
from agent.store import Alert, Incident, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'agent.db'}")
    yield s
    s.close()


def alert_row(i: int, at: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "source": "wazuh", "rule_id": "5712", "severity": 67, "host": f"h{i}",
            "user": None, "source_ip": "203.0.113.7", "digest": f"{i:064x}",
            "raw": {"payload": {"rule": {"id": "5712"}, "n": i, "text": "é ☃"}, "normalized": {}},
            "received_at": at, "incident_id": None, "disposition": "deduped"}


def statements(store: Store) -> list[str]:
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


class TestInsert:
    def test_rows_read_back_as_the_orm_wrote_them(self, store: Store):
        """JSON and UTC timestamps go through the columns' own bind processors: the ORM reads equal values."""
        at = datetime(2026, 11, 23, 3, 12, 44, 118000, tzinfo=UTC)
        rows = [alert_row(i, at + timedelta(seconds=i)) for i in range(3)]
        with store.engine.begin() as conn:
            BulkTable(Alert.__table__, store.engine.dialect).insert(conn, rows)
        with store.session() as s:
            got = {a.id: a for a in s.scalars(select(Alert))}
            orm = Alert(**{**alert_row(9, at), "id": "orm"})
            s.add(orm)
        for row in rows:
            a = got[row["id"]]
            assert (a.raw, a.received_at, a.user, a.host) == (row["raw"], row["received_at"], None, row["host"])
        with store.engine.connect() as conn:  # stored text identical to the ORM's for the same values
            raw_text = dict(conn.exec_driver_sql("SELECT id, received_at FROM alerts").all())
        assert raw_text["orm"] == raw_text[rows[0]["id"]]

    def test_one_statement_per_table_and_chunked_at_the_parameter_limit(self, store: Store):
        """300 rows of 12 columns: ceil(300 / (999 // 12)) statements, every row stored once."""
        rows = [alert_row(i, datetime.now(UTC)) for i in range(300)]
        seen = statements(store)
        with store.engine.begin() as conn:
            BulkTable(Alert.__table__, store.engine.dialect).insert(conn, rows)
        inserts = [q for q in seen if q.startswith("INSERT INTO alerts")]
        assert len(inserts) == -(-300 // (bulk.MAX_PARAMS // 12))
        with store.session() as s:
            assert sorted(s.scalars(select(Alert.id))) == sorted(r["id"] for r in rows)

    def test_other_placeholder_styles_use_plain_executemany(self, store: Store):
        table = BulkTable(Alert.__table__, store.engine.dialect)
        table.mark = None
        rows = [alert_row(i, datetime.now(UTC)) for i in range(3)]
        with store.engine.begin() as conn:
            table.insert(conn, rows)
        with store.session() as s:
            assert {a.id: a.raw for a in s.scalars(select(Alert))} == {r["id"]: r["raw"] for r in rows}


class TestUpdate:
    def seed(self, store: Store, n: int) -> list[str]:
        ids = [f"INC-20261123-000000-{i:04x}" for i in range(n)]
        with store.session() as s:
            s.add_all(Incident(id=i, title="t", status="open") for i in ids)
        return ids

    @pytest.mark.parametrize("update_from", [True, False])
    def test_keyed_update_later_rows_win(self, store: Store, update_from: bool):
        ids = self.seed(store, 4)
        table = BulkTable(Incident.__table__, store.engine.dialect)
        table.update_from = update_from
        rows = [(ids[0], {"status": "closed", "title": "a"}), (ids[1], {"status": "contained", "title": "b"}),
                (ids[0], {"status": "released", "title": "c"})]
        with store.engine.begin() as conn:
            table.update(conn, "id", rows)
        with store.session() as s:
            got = {i.id: (i.status, i.title) for i in s.scalars(select(Incident))}
        assert got == {ids[0]: ("released", "c"), ids[1]: ("contained", "b"), ids[2]: ("open", "t"),
                       ids[3]: ("open", "t")}

    def test_large_update_is_chunked(self, store: Store):
        ids = self.seed(store, 700)
        seen = statements(store)
        with store.engine.begin() as conn:
            BulkTable(Incident.__table__, store.engine.dialect).update(conn, "id", [(i, {"status": "closed"})
                                                                                    for i in ids])
        assert len([q for q in seen if q.startswith("UPDATE incidents")]) == -(-700 // (bulk.MAX_PARAMS // 2))
        with store.session() as s:
            assert set(s.scalars(select(Incident.status))) == {"closed"}

    def test_nothing_to_do_issues_nothing(self, store: Store):
        seen = statements(store)
        with store.engine.begin() as conn:
            BulkTable(Incident.__table__, store.engine.dialect).update(conn, "id", [])
            BulkTable(Incident.__table__, store.engine.dialect).insert(conn, [])
        assert not [q for q in seen if q.startswith(("UPDATE", "INSERT"))]
