"""An action in doubt at a worker site, re-checked on the daemon's schedule (agent/workers/settle.py): the daemon
asks the site (a ``settle`` read), audits the answer and reschedules with the backoff while it stays in doubt;
the worker claims the action (the one gate) before touching anything. (SQLite, no broker here; the real workers,
RabbitMQ, PostgreSQL and hosts are in tests/integration/test_site_in_doubt.py.)"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from agent import scheduler
from agent.store import Action, Incident, Store, utcnow
from agent.workers import settle
from agent.workers.config import WorkersConfig
from agent.workers.lease import claim
from agent.workers.models import SiteRead
from agent.workers.reads import ReadOutcome, SiteReads, claim_read, finish

SITE = "boston"


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/j.db")
    with s.session() as db:
        db.add(Incident(id="INC-1"))
        db.add(Action(id="a1", incident_id="INC-1", runbook="isolate-host", step="isolate", target="h01",
                      connector="ssh_linux", action="isolate", state="in_doubt", owner="w0:1:1", site=SITE,
                      expires_at=utcnow() + timedelta(hours=1)))
    yield s
    s.close()


def set_row(store: Store, **values: Any) -> None:
    with store.session() as db:
        db.execute(update(Action).where(Action.id == "a1").values(**values))


def state_of(store: Store) -> str:
    with store.session() as db:
        row = db.get(Action, "a1")
        assert row is not None
        return row.state


# -- the daemon's decision ------------------------------------------------------------------------------------
def answer(ok: bool = True, worker: str | None = "w1:2:3", **result: Any) -> ReadOutcome:
    return ReadOutcome("r1", SITE, ok, result, "" if ok else "some error", worker)


def test_still_in_doubt_is_audited_and_asked_again_with_the_backoff():
    got = settle.decide(answer(outcome="in_doubt", worker="w1:2:3"), "in_doubt", 2, timedelta(seconds=8))
    assert got.event == "recheck.done" and got.again_in == timedelta(seconds=8)
    assert got.fields == {"attempt": 2, "site": SITE, "read_id": "r1", "outcome": "in_doubt", "state": "in_doubt",
                          "worker": "w1:2:3", "retry_in": 8}


def test_settled_is_audited_and_not_asked_again():
    got = settle.decide(answer(outcome="done"), "done", 3, timedelta(seconds=16))
    assert (got.event, got.again_in, got.fields["outcome"]) == ("recheck.done", None, "done")
    assert "retry_in" not in got.fields
    gone = settle.decide(answer(outcome="settled"), None, 3, timedelta(seconds=16))  # undone meanwhile
    assert gone.again_in is None


def test_a_site_nobody_answers_is_named_and_asked_again_never_failed():
    got = settle.decide(ReadOutcome("r1", SITE, False, {}, "no worker of site boston took the in-doubt re-check "
                                    "of h01 within 8s", None), "in_doubt", 1, timedelta(seconds=4))
    assert got.event == "recheck.unanswered" and got.again_in == timedelta(seconds=4)
    assert got.fields["site"] == SITE and "no worker of site boston" in got.fields["error"]
    assert "outcome" not in got.fields  # nothing was read: no outcome to report


def test_held_by_a_live_worker_or_not_finished_is_asked_again():
    held = settle.decide(answer(outcome="held", holder="w2:1:1"), "verifying", 1, timedelta(seconds=4))
    assert held.again_in == timedelta(seconds=4) and held.fields["holder"] == "w2:1:1"
    slow = settle.decide(answer(ok=False, worker="w1:2:3"), "verifying", 1, timedelta(seconds=4))
    assert (slow.event, slow.fields["outcome"], slow.again_in) == ("recheck.done", "unknown", timedelta(seconds=4))


# -- the daemon's job, end to end over the journal (a stand-in worker answers the read) ---------------------------
class Svc:
    """The daemon service as the recheck job sees it; the site's worker is :meth:`worker`, run as the read is
    sent (no broker)."""

    def __init__(self, store: Store, outcome: str | None) -> None:
        self.store, self.outcome = store, outcome
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[tuple[str, str, int, Any]] = []
        self.locked: list[list[str]] = []
        self.sent = 0
        cfg = WorkersConfig(broker="amqp://x@127.0.0.1:1/", sites=(SITE,), lease=5)
        self.app = SimpleNamespace(settings=SimpleNamespace(workers=cfg))
        self.config = SimpleNamespace(retry_interval=timedelta(seconds=2))
        self.audit = self  # record() below
        self.scheduler = SimpleNamespace(
            schedule_recheck=lambda i, n, when: self.calls.append(("recheck", i, n, when)),
            schedule_release=lambda i, when: self.calls.append(("release", i, 0, when)))
        self.runner = SimpleNamespace(locked=self._lock, engine=SimpleNamespace(cancel=threading.Event()))
        self.metrics = SimpleNamespace(job_latency=SimpleNamespace(
            labels=lambda name: SimpleNamespace(observe=lambda v: None)))
        self.reads = SiteReads(store, cfg, "daemon:1:1", claim_within=0.3, finish_within=2, tick=0.02)
        self.reads._send = self.worker  # type: ignore[method-assign]

    def record(self, event: str, **fields: Any) -> None:
        self.records.append((event, fields))

    def _lock(self, targets: list[str]) -> Any:
        self.locked.append(targets)
        return contextlib.nullcontext()

    def worker(self, site: str, read_id: str) -> None:
        self.sent += 1
        if self.outcome is None:
            return  # nobody of the site: the read stays queued and is given up
        assert claim_read(self.store, read_id, "w1:2:3", 5, site=site).result.value == "fresh"
        set_row(self.store, state=self.outcome)
        with self.store.session() as s:
            assert finish(s, read_id, "w1:2:3", result={"outcome": self.outcome, "state": self.outcome,
                                                        "worker": "w1:2:3"})


@pytest.fixture
def job(store, monkeypatch):
    monkeypatch.setattr(settle, "_SILENT", settle._Silence())

    def make(outcome: str | None) -> Svc:
        svc = Svc(store, outcome)
        monkeypatch.setattr("agent.workers.reads.for_process", lambda *a, **k: svc.reads)
        monkeypatch.setattr(scheduler, "_RUNTIME", svc)
        return svc
    return make


def test_the_recheck_job_asks_the_site_and_reschedules_with_the_backoff(job, store):
    svc = job("in_doubt")
    before = utcnow()
    scheduler.recheck_action("a1", 2)
    [(event, fields)] = svc.records
    assert event == "recheck.done" and fields["outcome"] == "in_doubt" and fields["retry_in"] == 8
    assert fields["worker"] == "w1:2:3" and fields["site"] == SITE and fields["attempt"] == 2
    [(what, action_id, attempt, when)] = svc.calls
    assert (what, action_id, attempt) == ("recheck", "a1", 3)
    assert timedelta(seconds=7) < when - before < timedelta(seconds=10)  # retry_interval 2 s × 2^(3-1)
    assert svc.locked == []  # no target lock held while the site's worker settles it
    with store.session() as s:
        [read] = s.query(SiteRead).all()
        assert (read.kind, read.action_id, read.cause) == ("settle", "a1", "daemon recheck 2")


def test_the_recheck_job_schedules_the_ttl_release_once_done(job):
    svc = job("done")
    scheduler.recheck_action("a1", 1)
    assert [e for e, _f in svc.records] == ["recheck.done"]
    assert [(c[0], c[1]) for c in svc.calls] == [("release", "a1")]


def test_the_recheck_job_names_a_site_without_workers_and_keeps_the_action_in_doubt(job, store):
    svc = job(None)
    scheduler.recheck_action("a1", 1)
    [(event, fields)] = svc.records
    assert event == "recheck.unanswered" and fields["site"] == SITE and fields["retry_in"] == 4
    assert "no worker of site boston took the in-doubt re-check of h01" in fields["error"]
    assert [(c[0], c[2]) for c in svc.calls] == [("recheck", 2)]
    assert state_of(store) == "in_doubt"


def test_a_silent_site_holds_one_scheduler_thread_not_one_per_action(job, store):
    """Dozens in doubt at a dead site: once a re-check there went unanswered, the next ones (within the time a
    worker has to take one) are audited unanswered at once and rescheduled, without asking and waiting again;
    an answer from the site ends that."""
    svc = job(None)
    svc.reads.claim_within = 5
    svc.reads.wait = lambda ids: [ReadOutcome(ids[0], SITE, False, {}, "no worker of site boston took it", None)]
    scheduler.recheck_action("a1", 1)
    started = time.monotonic()
    scheduler.recheck_action("a1", 2)
    assert time.monotonic() - started < 1 and svc.sent == 1
    [first, second] = svc.records
    assert first[0] == "recheck.unanswered" and first[1]["read_id"] is not None
    assert second[0] == "recheck.unanswered" and second[1]["read_id"] is None
    assert "no worker of site boston took it (a re-check at site boston went unanswered" in second[1]["error"]
    assert [(c[0], c[2]) for c in svc.calls] == [("recheck", 2), ("recheck", 3)]
    svc.outcome = "in_doubt"  # a worker back: its answer clears the silence
    svc.reads.wait = SiteReads.wait.__get__(svc.reads)
    settle._SILENT.note(ReadOutcome("r9", SITE, True, {}, "", "w1:2:3"))
    scheduler.recheck_action("a1", 3)
    assert svc.sent == 2 and svc.records[-1][0] == "recheck.done"


# -- the worker's side: the action's claim is the one gate --------------------------------------------------------
class Worker:
    """A site worker's claim (the real compare-and-swap) and run (a stand-in for ActionRunner.resolve)."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store, self.owner, self.runs = store, owner, 0

    def _claim(self, action_id: str, *, in_doubt: bool = False) -> Any:
        return claim(self.store, action_id, self.owner, 30, site=SITE, in_doubt=in_doubt)

    def _run(self, got: Any, args: dict[str, Any]) -> str:
        self.runs += 1
        time.sleep(0.05)  # reading the target
        set_row(self.store, state="done")
        return "takeover:done"


def reader_for(store: Store, owner: str) -> Any:
    w = Worker(store, owner)
    return SimpleNamespace(w=w, app=SimpleNamespace(store=store), owner=owner)


def a_read(store: Store, owner: str) -> SiteRead:
    with store.session() as s:
        read = SiteRead(site=SITE, kind="settle", action_id="a1", target="h01", state="queued")
        s.add(read)
    assert claim_read(store, read.id, owner, 30, site=SITE).result.value == "fresh"
    return read


def result_of(store: Store, read: SiteRead) -> dict[str, Any]:
    with store.session() as s:
        row = s.get(SiteRead, read.id)
        assert row is not None and row.state == "done"
        return dict(row.result or {})


def test_the_worker_claims_then_settles_and_a_second_request_touches_nothing(store):
    one, two = reader_for(store, "w1:1:1"), reader_for(store, "w2:1:1")
    first, second = a_read(store, "w1:1:1"), a_read(store, "w2:1:1")
    assert settle.settle_at_site(one, first) == "done"
    assert result_of(store, first) == {"outcome": "done", "state": "done", "summary": "takeover:done",
                                       "worker": "w1:1:1"}
    assert settle.settle_at_site(two, second) == "settled" and two.w.runs == 0
    assert result_of(store, second)["summary"] == "no longer in doubt (done); not touched here"


def test_an_action_a_live_worker_holds_is_left_to_it(store):
    set_row(store, owner="sweeper:9:9", lease_until=utcnow() + timedelta(seconds=30))
    reader = reader_for(store, "w1:1:1")
    read = a_read(store, "w1:1:1")
    assert settle.settle_at_site(reader, read) == "held" and reader.w.runs == 0
    assert result_of(store, read)["holder"] == "sweeper:9:9"
    assert state_of(store) == "in_doubt"


def test_racing_requests_and_a_sweep_settle_it_once(store):
    """Two daemons' requests, a redelivery and the worker's own sweep at the same moment: one claim wins."""
    readers = [reader_for(store, f"w{n}:1:1") for n in range(4)]
    reads = [a_read(store, r.owner) for r in readers]
    barrier = threading.Barrier(len(readers))
    results: list[str] = []

    def go(n: int) -> None:
        barrier.wait()
        results.append(settle.settle_at_site(readers[n], reads[n]))
    threads = [threading.Thread(target=go, args=(n,)) for n in range(len(readers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.w.runs for r in readers) == 1, results
    assert sorted(results).count("done") == 1 and set(results) <= {"done", "held", "settled"}, results
    assert state_of(store) == "done"
