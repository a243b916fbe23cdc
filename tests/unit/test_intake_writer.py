"""The group-committing alert writer: many requests share one transaction; a failure never half-stores one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from agent.intake.model import NormalizedAlert
from agent.intake.tables import IntakeIncident, create_tables
from agent.intake.rules import Rule
from agent.intake.writer import AlertWriter, Decision
from agent.store import Alert, Incident, Store

RULE = Rule(name="r1", runbook="isolate-host", target_field="host", policy="dry-run")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'agent.db'}")
    create_tables(s.engine)
    yield s
    s.close()


class Delivered:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.lock = threading.Lock()

    def __call__(self, decisions: list[Decision]) -> None:
        with self.lock:
            self.decisions.extend(decisions)


def decision(host: str, *, new: bool = True, incident: str | None = None, alert_id: str | None = None) -> Decision:
    alert = NormalizedAlert(source="wazuh", rule_id="5712", severity=67, host=host, raw={"level": 10})
    inc = incident or f"INC-20261123-000000-{uuid.uuid4().hex[:8]}"
    return Decision(alert_id=alert_id or str(uuid.uuid4()), alert=alert, digest="ab" * 32,
                    received_at=datetime.now(UTC), disposition="accepted" if new else "deduped", incident=inc,
                    new_incident=new, rule=RULE, target=host, raw={"payload": {"host": host}, "normalized": {}})


def count(store: Store, model: Any) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def commits(store: Store) -> list[int]:
    seen: list[int] = []
    event.listen(store.engine, "commit", lambda conn: seen.append(1))
    return seen


class TestGroupCommit:
    def test_queued_requests_share_one_transaction(self, store: Store):
        """Fifty requests queued while the writer is busy are committed together, then delivered once each."""
        delivered = Delivered()
        writer = AlertWriter(store, delivered)
        futures = [writer.submit([decision(f"h{i}")]) for i in range(50)]
        seen = commits(store)
        writer.start()
        try:
            for fut in futures:
                fut.result(10)
        finally:
            writer.stop()
        assert len(seen) == 1
        assert (count(store, Alert), count(store, Incident), count(store, IntakeIncident)) == (50, 50, 50)
        assert len(delivered.decisions) == 50

    def test_concurrent_submitters_are_stored_exactly_once(self, store: Store):
        """Sixteen threads submitting at once: every request resolves, every alert is stored and delivered once."""
        delivered = Delivered()
        writer = AlertWriter(store, delivered)
        writer.start()
        results: list[tuple[list[str], Future[None]]] = []
        lock = threading.Lock()

        def submitter(t: int) -> None:
            for i in range(25):
                ds = [decision(f"h{t}-{i}"), decision(f"h{t}-{i}", new=False)]
                ds[1].incident = ds[0].incident  # a duplicate joining the incident opened in the same request
                fut = writer.submit(ds)
                with lock:
                    results.append(([d.alert_id for d in ds], fut))
        threads = [threading.Thread(target=submitter, args=(t,)) for t in range(16)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for _, fut in results:
                fut.result(10)
        finally:
            writer.stop()
        ids = [i for ids, _ in results for i in ids]
        with store.session() as s:
            stored = list(s.scalars(select(Alert.id)))
        assert sorted(stored) == sorted(ids) and len(set(ids)) == 800
        assert count(store, Incident) == 400
        assert sorted(d.alert_id for d in delivered.decisions) == sorted(ids)

    def test_a_failing_request_fails_alone_and_stores_nothing(self, store: Store):
        """One request in a batch breaks a constraint: it fails, the others in its batch are stored, and none of
        its rows (incident, intake row, alert) remain."""
        delivered = Delivered()
        writer = AlertWriter(store, delivered)
        first = decision("h1")
        bad = decision("h2", alert_id=first.alert_id)  # the same alert id: the primary key refuses it
        futures = [writer.submit([first]), writer.submit([bad]), writer.submit([decision("h3")])]
        writer.start()
        try:
            futures[0].result(10)
            futures[2].result(10)
            with pytest.raises(IntegrityError):
                futures[1].result(10)
        finally:
            writer.stop()
        with store.session() as s:
            assert s.get(Incident, bad.incident) is None
            assert s.get(IntakeIncident, bad.incident) is None
            assert sorted(a.host for a in s.scalars(select(Alert))) == ["h1", "h3"]
        assert sorted(d.target for d in delivered.decisions) == ["h1", "h3"]

    def test_store_failure_fails_every_waiting_request(self, store: Store):
        """The database refuses writes: every request waiting on the batch gets the error, nothing is stored or
        delivered; once it accepts writes again, new requests are stored."""
        def refuse(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("INSERT"):
                raise OSError("disk I/O error")
        event.listen(store.engine, "before_cursor_execute", refuse)
        delivered = Delivered()
        writer = AlertWriter(store, delivered)
        futures = [writer.submit([decision(f"h{i}")]) for i in range(5)]
        writer.start()
        try:
            for fut in futures:
                with pytest.raises(Exception, match="disk I/O error"):
                    fut.result(10)
            assert (count(store, Alert), count(store, Incident), delivered.decisions) == (0, 0, [])
            event.remove(store.engine, "before_cursor_execute", refuse)
            writer.submit([decision("h9")]).result(10)
        finally:
            writer.stop()
        assert count(store, Alert) == 1

    def test_bookkeeping_updates_share_the_commit(self, store: Store):
        """The dispatcher's updates run in the writer's transaction, after the inserts queued before them."""
        writer = AlertWriter(store, Delivered())
        d = decision("h1")
        stored = writer.submit([d])
        updated = writer.submit_update(lambda conn: writer.bulk["alerts"].update(
            conn, "id", [(d.alert_id, {"disposition": "dry-run"})]))
        seen = commits(store)
        writer.start()
        try:
            stored.result(10)
            updated.result(10)
        finally:
            writer.stop()
        assert len(seen) == 1
        with store.session() as s:
            assert s.get(Alert, d.alert_id).disposition == "dry-run"
