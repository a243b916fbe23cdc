"""The worker's claim on an action (agent/workers/lease.py) and the fenced journal (agent/workers/worker.py):
exactly one claimant wins; a redelivery while a live worker holds it, or after it settled, is dropped; an expired
lease is taken over; a worker that lost its lease cannot write the row any more. (SQLite here; the same
statements run on PostgreSQL in tests/integration/test_site_workers.py.)"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from agent.store import Action, Incident, Store, utcnow
from agent.workers.lease import ClaimResult, Heartbeat, LeaseLost, claim, renew
from agent.workers.worker import FencedJournal


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    def record(self, event: str, **fields):
        self.records.append((event, fields))
        return fields


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/j.db")
    with s.session() as db:
        db.add(Incident(id="INC-1"))
        db.add(Action(id="a1", incident_id="INC-1", runbook="isolate-host", step="isolate", target="h01",
                      connector="ssh_linux", action="isolate", state="intent", owner="central:1:1", site="boston"))
    yield s
    s.close()


def set_row(store: Store, **values):
    with store.session() as db:
        db.execute(update(Action).where(Action.id == "a1").values(**values))


def test_fresh_claim_then_redelivery_is_held(store):
    first = claim(store, "a1", "w1", 30, site="boston")
    assert first.result is ClaimResult.FRESH and first.previous_owner == "central:1:1"
    again = claim(store, "a1", "w2", 30, site="boston")  # the same message delivered to another worker
    assert again.result is ClaimResult.HELD and again.previous_owner == "w1"


def test_only_one_of_many_racing_claimants_wins(store):
    results: list[ClaimResult] = []
    barrier = threading.Barrier(8)

    def go(n: int) -> None:
        barrier.wait()
        results.append(claim(store, "a1", f"w{n}", 30, site="boston").result)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ClaimResult.FRESH) == 1
    assert set(results) <= {ClaimResult.FRESH, ClaimResult.HELD, ClaimResult.LOST}


def test_other_sites_and_settled_actions_are_not_claimed(store):
    assert claim(store, "a1", "w1", 30, site="lyon").result is ClaimResult.FOREIGN
    assert claim(store, "nope", "w1", 30).result is ClaimResult.MISSING
    for state in ("done", "failed", "skipped", "in_doubt"):
        set_row(store, state=state)
        assert claim(store, "a1", "w1", 30, site="boston").result is ClaimResult.SETTLED
    # an action in doubt is claimed only to re-verify it (the site's sweep)
    assert claim(store, "a1", "w1", 30, site="boston", in_doubt=True).result is ClaimResult.TAKEOVER


def test_fresh_only_never_takes_over_a_dead_workers_action(store):
    """The engine settling an action no worker took (agent/workers/dispatch.py) must win only a never-claimed
    row: a row a worker claimed and stopped renewing may be on the target, and only the site can read that."""
    assert claim(store, "a1", "central:1:1", 30, site="boston", fresh_only=True).result is ClaimResult.FRESH
    set_row(store, owner="w1", lease_until=utcnow() - timedelta(seconds=5), state="applying")
    got = claim(store, "a1", "central:1:1", 30, site="boston", fresh_only=True)
    assert got.result is ClaimResult.EXPIRED and got.previous_owner == "w1"
    set_row(store, lease_until=utcnow() + timedelta(seconds=30))
    assert claim(store, "a1", "central:1:1", 30, site="boston", fresh_only=True).result is ClaimResult.HELD


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(store):
    assert claim(store, "a1", "w1", 30).result is ClaimResult.FRESH
    set_row(store, state="applying", lease_until=utcnow() - timedelta(seconds=1))  # w1 died mid-action
    took = claim(store, "a1", "w2", 30)
    assert took.result is ClaimResult.TAKEOVER and took.previous_owner == "w1"
    assert not renew(store, "a1", "w1", 30) and renew(store, "a1", "w2", 30)


def test_fenced_journal_refuses_a_worker_that_lost_its_lease(store):
    audit = Audit()
    journal = FencedJournal(store, audit, lease=30)
    got = claim(store, "a1", journal.owner, 30)
    row = got.row
    assert got.result is ClaimResult.FRESH and row is not None
    journal.transition(row, "snapshotted", "state recorded", snapshot={"x": 1})
    with store.session() as db:
        assert db.get(Action, "a1").lease_until > utcnow() + timedelta(seconds=20)  # each write extends it
    set_row(store, owner="w2")  # taken over after the lease lapsed
    with pytest.raises(LeaseLost):
        journal.transition(row, "applying", "would overwrite w2's record")
    with store.session() as db:
        assert db.get(Action, "a1").state == "snapshotted"
    assert [e for e, _ in audit.records].count("action.transition") == 1


def test_heartbeat_keeps_the_lease_and_notices_a_takeover(store):
    assert claim(store, "a1", "w1", 0.6).result is ClaimResult.FRESH
    with Heartbeat(store, "a1", "w1", 0.6) as beat:
        time.sleep(1.0)  # longer than the lease: only the heartbeat keeps it
        assert claim(store, "a1", "w2", 0.6).result is ClaimResult.HELD
        set_row(store, owner="w2")
        time.sleep(0.5)
        assert beat.lost.is_set()
