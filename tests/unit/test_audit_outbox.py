"""One audit chain per deployment (docs/audit-format.md): a site worker's records wait in the journal database's
outbox, committed with the transition they describe, and the chain's writer appends them — in order, once, with
their own event time, site and worker — even when a drain dies between appending and deleting.
(SQLite here; the same statements run on PostgreSQL in tests/integration/test_site_workers.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.audit import AuditLog, verify
from agent.audit.keys import generate_keypair
from agent.audit.outbox import AuditChainConflict, Drainer, OutboxAudit, drain, pending
from agent.journal import Journal
from agent.report import from_records  # the package export: importing the submodule by name would shadow it
from agent.store import Action, AuditOutbox, Incident, Store
from agent.workers.lease import LeaseLost
from agent.workers.worker import FencedJournal


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/j.db")
    with s.session() as db:
        db.add(Incident(id="INC-1"))
    yield s
    s.close()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "audit-signing.key"
    generate_keypair(path)
    return path


def chain(directory: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(directory.glob("audit-*.jsonl")) for line in p.read_text().splitlines()]


def outbox_rows(store: Store) -> list[AuditOutbox]:
    with store.session() as s:
        return list(s.scalars(select(AuditOutbox).order_by(AuditOutbox.id)))


def worker_run(store: Store, *, site: str = "boston") -> tuple[OutboxAudit, Journal, Action]:
    """What a site worker's journal does for one action: claim-less intent → applying → done, with its audit
    records queued in the outbox."""
    audit = OutboxAudit(store, actor="worker:boston@wk1", site=site, worker="wk1:4242:1")
    journal = Journal(store, audit)
    row = journal.create(Action(incident_id="INC-1", runbook="isolate-host", step="isolate", target="h01",
                                connector="ssh_linux", action="isolate", state="intent", site=site))
    journal.transition(row, "applying", "sending the ruleset", snapshot={"tables": []})
    journal.transition(row, "done", "verified", result={"summary": "isolated"}, changed=1,
                       verification={"summary": "rules in place"})
    return audit, journal, row


def test_worker_records_are_queued_in_the_transaction_of_their_transition(store: Store):
    """Each transition's records are in the outbox once it commits — and not at all when it does not (a fenced
    transition refused because the lease was lost leaves neither the state nor its record)."""
    audit, _journal, row = worker_run(store)
    events = [r.record["event"] for r in outbox_rows(store)]
    assert events == ["action.intent", "action.transition", "action.transition", "action.done"]
    rec = outbox_rows(store)[-1].record
    assert (rec["site"], rec["worker"], rec["actor"]) == ("boston", "wk1:4242:1", "worker:boston@wk1")
    assert rec["event_ts"].endswith("Z") and "seq" not in rec and "hash" not in rec
    fenced = FencedJournal(store, audit, lease=30)
    fenced.owner = "someone-else"  # the row is owned by the journal above: this worker lost its lease
    before = len(outbox_rows(store))
    with store.session() as s:
        row2 = s.get(Action, row.id)
        assert row2 is not None
        s.expunge(row2)
    row2.state = "done"
    with pytest.raises(LeaseLost):
        fenced.transition(row2, "in_doubt", "should not be written")
    assert len(outbox_rows(store)) == before


def test_secrets_are_redacted_before_they_leave_the_worker(store: Store):
    audit = OutboxAudit(store, actor="w", known_secrets=("hunter2-long",))
    audit.record("worker.note", incident="INC-1", password="p4ssw0rd!", detail="login with hunter2-long failed")
    [row] = outbox_rows(store)
    assert "p4ssw0rd" not in json.dumps(row.record) and "hunter2-long" not in json.dumps(row.record)


def test_drain_chains_each_record_once_in_order_with_its_own_time_site_and_worker(store: Store, tmp_path: Path,
                                                                                 key: Path):
    worker_run(store)
    queued = [(r.id, r.record) for r in outbox_rows(store)]
    with AuditLog(tmp_path / "audit", signing_key=key, actor="central") as log:
        log.record("incident.opened", incident="INC-1", title="t", reason="r", requested_by="a", trigger="cli")
        result = drain(store, log)
    assert (result.appended, result.recovered, result.busy) == (4, 0, False)
    assert pending(store) == 0
    recs = [r for r in chain(tmp_path / "audit") if "outbox_id" in r]
    assert [r["outbox_id"] for r in recs] == [i for i, _ in queued]
    for rec, (_, original) in zip(recs, queued, strict=True):
        assert rec["event"] == original["event"] and rec["event_ts"] == original["event_ts"]
        assert (rec["site"], rec["worker"], rec["actor"], rec["pid"]) == (
            "boston", "wk1:4242:1", "worker:boston@wk1", original["pid"])
    report = verify(tmp_path / "audit", public_key=key.with_name(key.name + ".pub"))
    assert report.ok and report.checkpoints_verified >= 1, report.first_error


def test_drain_killed_after_appending_before_deleting_neither_loses_nor_doubles(store: Store, tmp_path: Path,
                                                                                key: Path, monkeypatch):
    worker_run(store)
    ids = [r.id for r in outbox_rows(store)]

    def die(name: str) -> None:
        raise SystemExit(f"killed at {name}")
    monkeypatch.setattr("agent.audit.drain.failpoint", die)
    with AuditLog(tmp_path / "audit", signing_key=key, actor="central") as log:
        log.record("incident.opened", incident="INC-1", title="t", reason="r", requested_by="a", trigger="cli")
        with pytest.raises(SystemExit):
            drain(store, log)
    assert [r.id for r in outbox_rows(store)] == ids  # appended, not deleted: the rows are marked
    assert all(r.drain_from is not None for r in outbox_rows(store))
    monkeypatch.undo()
    worker_run(store)  # more records arrive meanwhile
    with AuditLog(tmp_path / "audit", signing_key=key, actor="central") as log:  # the writer, restarted
        result = drain(store, log)
    assert (result.recovered, result.appended) == (4, 4)
    assert pending(store) == 0
    got = [r["outbox_id"] for r in chain(tmp_path / "audit") if "outbox_id" in r]
    assert sorted(got) == sorted(set(got)) and len(got) == 8
    assert verify(tmp_path / "audit", public_key=key.with_name(key.name + ".pub")).ok


def test_drain_killed_midway_through_appending_chains_the_rest_once(store: Store, tmp_path: Path, key: Path,
                                                                     monkeypatch):
    worker_run(store)
    calls = {"n": 0}
    real = AuditLog.record

    def flaky(self: AuditLog, event: str, **fields):
        if "outbox_id" in fields:
            calls["n"] += 1
            if calls["n"] == 3:
                raise SystemExit("killed mid-batch")
        return real(self, event, **fields)
    monkeypatch.setattr(AuditLog, "record", flaky)
    with AuditLog(tmp_path / "audit", signing_key=key, actor="central") as log, pytest.raises(SystemExit):
        drain(store, log)
    monkeypatch.undo()
    with AuditLog(tmp_path / "audit", signing_key=key, actor="central") as log:
        result = drain(store, log)
    assert (result.recovered, result.appended) == (2, 2)
    got = [r["outbox_id"] for r in chain(tmp_path / "audit") if "outbox_id" in r]
    assert got == sorted(set(got)) and len(got) == 4


def test_a_writer_with_another_chain_refuses_to_drain(store: Store, tmp_path: Path):
    """Two writers each with their own directory would split the deployment's records over two chains."""
    worker_run(store)
    with AuditLog(tmp_path / "a", actor="a") as first:
        first.record("daemon.started")
        drain(store, first)
    worker_run(store)
    with AuditLog(tmp_path / "b", actor="b") as second:
        second.record("daemon.started")
        with pytest.raises(AuditChainConflict, match="not the one in"):
            drain(store, second)
        assert Drainer(store, second).drain_through(timeout=0.2) is False
    assert pending(store) == 4  # still queued for the deployment's writer


def test_report_counts_each_routed_action_once(store: Store, tmp_path: Path):
    """The central's plan/intent and the worker's steps and outcome in one chain: one action, done once."""
    with AuditLog(tmp_path / "audit", actor="central") as log:
        log.record("incident.opened", incident="INC-1", title="t", reason="r", requested_by="a", trigger="cli")
        worker_run(store)
        drain(store, log)
    recs = chain(tmp_path / "audit")
    data = from_records(recs, "INC-1", {})
    assert len(data.actions) == 1
    [entry] = data.actions
    assert entry.status == "done" and [h for _, h in entry.history].count("done") == 1
    assert sum(r["event"] == "action.done" for r in recs) == 1


def test_evidence_a_worker_captured_goes_to_the_core_with_its_record(store: Store, tmp_path: Path):
    """The signed evidence.stored record and the file it hashes end up together on the core (an export of the
    incident carries both); a record whose file name would leave the evidence folder stores nothing."""
    from agent.evidence import check_evidence, store_evidence
    site_dir, core_dir = tmp_path / "site-evidence", tmp_path / "core-evidence"
    audit = OutboxAudit(store, actor="worker:boston", site="boston", evidence_dir=site_dir)
    [item] = store_evidence(site_dir, "INC-1", "h01", {"ps.txt": "pid 1 init\n"}, audit, "runbook", "ssh://h01")
    audit.record("evidence.stored", incident="INC-1", target="h01", file="../../etc/passwd", sha256="0" * 64)
    with AuditLog(tmp_path / "audit", actor="central") as log:
        log.record("incident.opened", incident="INC-1")
        drain(store, log)  # a drain that does not know the core's evidence folder leaves the file's record queued
        assert pending(store) == 1 and [r.record["event"] for r in outbox_rows(store)] == ["evidence.stored"]
        drain(store, log, evidence_dir=core_dir)
    assert pending(store) == 0
    assert (core_dir / "INC-1" / item.path).read_text() == "pid 1 init\n"
    assert [(i.path, problem) for i, problem in check_evidence(core_dir, "INC-1")] == [(item.path, None)]
    assert not (tmp_path / "etc").exists() and not list(core_dir.glob("**/passwd"))
    [stored] = [r for r in chain(tmp_path / "audit") if r["event"] == "evidence.stored" and r["file"] == item.path]
    assert stored["sha256"] == item.sha256 and stored["site"] == "boston"


def test_a_site_worker_refuses_the_audit_signing_key(tmp_path: Path):
    from agent.app import App
    from agent.commands.daemon import _refuse_audit_key
    from agent.errors import ConfigError
    (tmp_path / "inventory.yaml").write_text("hosts: {}\n")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"inventory: {tmp_path / 'inventory.yaml'}\naudit_signing_key: {tmp_path / 'k'}\n"
                   "database: postgresql+psycopg://agent@127.0.0.1/agent\n"
                   "workers: {broker: 'amqp://agent@127.0.0.1:5672/x'}\n")
    with pytest.raises(ConfigError, match="audit_signing_key.*must not hold its key"):
        _refuse_audit_key(App(config_path=cfg, audit_role="outbox"))
    cfg.write_text(f"inventory: {tmp_path / 'inventory.yaml'}\n"
                   "workers: {broker: 'amqp://agent@127.0.0.1:5672/x', audit: writer}\n")
    with pytest.raises(ConfigError, match="never writes the audit chain"):
        _refuse_audit_key(App(config_path=cfg, audit_role="outbox"))
