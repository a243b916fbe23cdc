"""The one audit chain's drain on a real private PostgreSQL (agent/audit/drain.py): several writer processes of
the same chain drain at once while records keep arriving — the advisory lock lets one drain at a time, each
queued record is chained exactly once and the chain verifies; while another process holds the lock a drain
reports itself busy and appends nothing, and the records wait."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from agent.audit import AuditLog, verify
from agent.audit.drain import DRAIN_LOCK, Drainer, drain, pending
from agent.audit.keys import generate_keypair
from agent.audit.outbox import OutboxAudit
from agent.store import Store
from tests.integration.pg_server import PgServer, private_postgres_server

pytestmark = [pytest.mark.root]

DRAINER = """
import sys, time
from pathlib import Path
from agent.audit import AuditLog
from agent.audit.drain import drain, pending
from agent.store import Store
store = Store(sys.argv[1])
with AuditLog(Path(sys.argv[2]), signing_key=Path(sys.argv[3]), actor="writer") as log:
    log.record("writer.started")
    go = Path(sys.argv[4])
    (go.parent / f"ready-{sys.argv[5]}").touch()
    while not go.exists():  # all start draining at once
        time.sleep(0.01)
    deadline = time.monotonic() + 60
    quiet = 0
    while time.monotonic() < deadline and quiet < 10:
        drain(store, log, batch=20)
        quiet = quiet + 1 if pending(store) == 0 else 0
        time.sleep(0.05)
store.close()
"""


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with private_postgres_server("audit-drain-") as server:
        yield server


def chain(directory: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(directory.glob("audit-*.jsonl")) for line in p.read_text().splitlines()]


def test_writers_of_one_chain_drain_together_each_record_once(pg: PgServer, tmp_path: Path):
    key = tmp_path / "k"
    generate_keypair(key)
    store = Store(pg.url)
    queue = OutboxAudit(store, actor="worker:boston", site="boston", worker="wk1:1:1")
    for n in range(300):
        queue.record("action.transition", incident="INC-1", action_id=f"a{n}", to_state="applying")
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", DRAINER, pg.url, str(tmp_path / "audit"), str(key), str(go),
                                 str(n)]) for n in range(4)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(writers) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    for n in range(300, 600):  # more arrive while they drain
        queue.record("action.transition", incident="INC-1", action_id=f"a{n}", to_state="applying")
    for proc in writers:
        assert proc.wait(timeout=120) == 0
    assert pending(store) == 0
    recs = chain(tmp_path / "audit")
    ids = [r["outbox_id"] for r in recs if "outbox_id" in r]
    assert len(ids) == 600 and len(set(ids)) == 600
    order = [int(r["action_id"][1:]) for r in recs if "outbox_id" in r]
    assert order == sorted(order)  # one queue, committed in order, chained in that order
    report = verify(tmp_path / "audit", public_key=key.with_name(key.name + ".pub"))
    assert report.ok, report.first_error
    store.close()


def test_a_drain_while_another_holds_the_lock_appends_nothing(pg: PgServer, tmp_path: Path):
    store = Store(pg.url)
    OutboxAudit(store, actor="w").record("worker.claimed", incident="INC-1", action_id="a1")
    holder = store.engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": DRAIN_LOCK})
    holder.commit()
    with AuditLog(tmp_path / "audit", actor="writer") as log:
        log.record("writer.started")
        assert drain(store, log).busy
        assert Drainer(store, log).drain_through(timeout=0.5) is False
        assert pending(store) == 1 and not [r for r in chain(tmp_path / "audit") if "outbox_id" in r]
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": DRAIN_LOCK})
        holder.commit()
        holder.close()
        assert Drainer(store, log).drain_through(timeout=5) is True
    assert [r["event"] for r in chain(tmp_path / "audit") if "outbox_id" in r] == ["worker.claimed"]
    store.close()
