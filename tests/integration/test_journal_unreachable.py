"""The shared journal (a real private PostgreSQL) goes away mid-run: each journal write is retried while it is
away, recorded once when it returns, and after ``Journal.wait`` seconds refused with a clear error — nothing
half-written, nothing recorded twice (issue 19: "PostgreSQL unreachable: clear errors, no half-written
transitions, recovery when it returns")."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from agent.journal import Journal, JournalUnavailable
from agent.store import Action, Incident, Store, Transition
from tests.integration.pg_server import PgServer, private_postgres_server


class Audit:
    def __init__(self) -> None:
        self.events: list[str] = []

    def record(self, event: str, **fields: object) -> dict[str, object]:
        self.events.append(event)
        return dict(fields)


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with private_postgres_server("journal-away-") as server:
        yield server


def new_row(store: Store, journal: Journal) -> Action:
    with store.session() as s:
        s.add(Incident(id="INC-1"))
    return journal.create(Action(id="a1", incident_id="INC-1", runbook="isolate-host", step="isolate",
                                 target="h01", connector="ssh_linux", action="isolate", state="intent"))


def states(store: Store) -> list[str]:
    with store.session() as s:
        return [t.to_state for t in s.scalars(select(Transition).order_by(Transition.id))]


def test_write_waits_for_the_database_and_is_recorded_once(pg: PgServer):
    store, audit = Store(pg.url), Audit()
    journal = Journal(store, audit)
    row = new_row(store, journal)
    pg.stop()
    threading.Timer(3.0, pg.start).start()  # back after 3 s
    started = time.monotonic()
    journal.transition(row, "snapshotted", "state recorded", snapshot={"tool": "nft"})
    assert time.monotonic() - started >= 2.5
    store.engine.dispose()  # connections from before the restart are gone
    assert states(store) == ["intent", "snapshotted"]
    assert audit.events.count("action.transition") == 1
    store.close()


def test_write_gives_up_with_a_clear_error_and_writes_nothing(pg: PgServer):
    store, audit = Store(pg.url), Audit()
    journal = Journal(store, audit)
    journal.wait = 2.0
    row = new_row(store, journal)
    pg.stop()
    try:
        with pytest.raises(JournalUnavailable) as info:
            journal.transition(row, "snapshotted", "state recorded", snapshot={"tool": "nft"})
        message = str(info.value)
        assert "journal database is unreachable" in message and "isolate on h01 -> snapshotted" in message
        assert "action.transition" not in audit.events  # the audit log says only what the journal holds
    finally:
        pg.start()
    store.engine.dispose()
    assert states(store) == ["intent"]
    with store.session() as s:
        assert s.get(Action, "a1").state == "intent"
    store.close()
