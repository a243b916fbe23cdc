"""Site reads (agent/workers/reads.py): a read for a target at a worker site is claimed by lease like an action,
settled once by its holder, and a read no worker takes is given up naming the site — so a late delivery drops
it. (SQLite here; PostgreSQL and real workers in tests/integration/test_site_workers.py.)"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from agent.store import Store, utcnow
from agent.workers.models import SiteRead
from agent.workers.config import WorkersConfig
from agent.workers.lease import ClaimResult
from agent.workers.reads import SiteReads, claim_read, finish


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/j.db")
    yield s
    s.close()


def reads(store: Store, sent: list[tuple[str, str]], claim_within: float = 0.3) -> SiteReads:
    r = SiteReads(store, WorkersConfig(broker="amqp://x@127.0.0.1:1/", sites=("boston",), lease=5), "central:1:1",
                  claim_within=claim_within, finish_within=5, tick=0.02)
    r._send = lambda site, read_id: sent.append((site, read_id))  # type: ignore[method-assign]  # no broker here
    return r


def test_a_read_is_claimed_once_and_settled_once(store):
    sent: list[tuple[str, str]] = []
    rid = reads(store, sent).request("boston", "verify", target="h01", cause="status --verify")
    assert sent == [("boston", rid)]
    assert claim_read(store, rid, "w1", 5, site="lyon").result is ClaimResult.FOREIGN
    results: list[ClaimResult] = []
    barrier = threading.Barrier(6)

    def go(n: int) -> None:
        barrier.wait()
        results.append(claim_read(store, rid, f"w{n}", 5, site="boston").result)
    threads = [threading.Thread(target=go, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ClaimResult.FRESH) == 1, results  # the rest: HELD or LOST — never run twice
    with store.session() as s:
        winner = s.get(SiteRead, rid).owner
    with store.session() as s:
        assert not finish(s, rid, "intruder", result={"state": "drift"})  # only the holder settles it
    with store.session() as s:
        assert finish(s, rid, winner, result={"state": "in_effect"})
    with store.session() as s:
        assert not finish(s, rid, winner, result={"state": "drift"})  # and only once
    assert claim_read(store, rid, "w9", 5, site="boston").result is ClaimResult.SETTLED
    got = reads(store, sent).wait([rid])[0]
    assert got.ok and got.result == {"state": "in_effect"} and got.worker == winner


def test_expired_read_lease_is_taken_over(store):
    sent: list[tuple[str, str]] = []
    rid = reads(store, sent).request("boston", "resolve", target="fw", target_kind="device", action="block_ip")
    assert claim_read(store, rid, "w1", 5, site="boston").result is ClaimResult.FRESH
    with store.session() as s:  # w1 died mid-read: its heartbeat stopped
        s.execute(update(SiteRead).where(SiteRead.id == rid).values(lease_until=utcnow() - timedelta(seconds=1)))
    got = claim_read(store, rid, "w2", 5, site="boston")
    assert got.result is ClaimResult.TAKEOVER and got.previous_owner == "w1"
    with store.session() as s:
        assert not finish(s, rid, "w1", result={})  # the dead worker's late answer is not written


def test_a_read_no_worker_takes_is_given_up_naming_the_site(store):
    sent: list[tuple[str, str]] = []
    r = reads(store, sent)
    rid = r.request("boston", "verify", target="h01")
    got = r.wait([rid])[0]
    assert not got.ok and got.worker is None
    assert "no worker of site boston took the read-back of h01 within 0.3s" in got.error
    assert "agent worker --site boston" in got.error and "Nothing was read or changed" in got.error
    assert claim_read(store, rid, "w1", 5, site="boston").result is ClaimResult.SETTLED  # a late delivery drops it


def test_a_read_that_cannot_be_queued_fails_at_once(store):
    r = reads(store, [])

    def down(site: str, read_id: str) -> None:
        raise ConnectionRefusedError("[Errno 111] Connection refused")
    r._send = down  # type: ignore[method-assign]
    got = r.run("boston", "verify", target="h01")
    assert not got.ok and "not queued for site boston: the broker could not be reached" in got.error


def test_the_sweep_forgets_settled_reads_after_an_hour_and_keeps_the_rest(store):
    """The daemon asks for a read per containment every reverify_interval: settled rows are transport, deleted
    after an hour (the proof each read journaled stays on its action); unsettled and other sites' rows stay."""
    import threading
    from types import SimpleNamespace

    from agent.workers.reader import SiteReader
    old = utcnow() - timedelta(hours=2)
    with store.session() as s:
        for rid, site, state, done_at in [("old", "boston", "done", old), ("old-failed", "boston", "failed", old),
                                          ("recent", "boston", "done", utcnow()), ("queued", "boston", "queued", None),
                                          ("lyon-old", "lyon", "done", old)]:
            s.add(SiteRead(id=rid, site=site, kind="verify", target="h01", state=state, done_at=done_at))
        # journaled but never published (its asker died in between): given up after workers.wait, then forgotten
        s.add(SiteRead(id="orphan", site="boston", kind="verify", target="h01", state="queued",
                       created_at=utcnow() - timedelta(seconds=1000)))
    worker = SimpleNamespace(app=SimpleNamespace(store=store), site="boston", owner="wk:1:1",
                             cfg=SimpleNamespace(lease=5, wait=900), stopping=threading.Event())
    assert SiteReader(worker).sweep() == []  # type: ignore[arg-type]
    with store.session() as s:
        assert sorted(r.id for r in s.query(SiteRead)) == ["lyon-old", "orphan", "queued", "recent"]
        assert s.get(SiteRead, "orphan").state == "failed" and s.get(SiteRead, "queued").state == "queued"
