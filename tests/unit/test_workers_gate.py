"""The gate on an applied action (agent/workers/gate.py): one lease on its row, taken by a drift re-apply and by an
undo of it. The integration tests (tests/integration/test_site_gate.py) order the real races on real hosts; these
pin the rules on the journal alone (SQLite: the same compare-and-swap, this process's clock)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from agent.store import Action, Incident, Store, utcnow
from agent.workers import gate


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/j.db")
    with s.session() as db:
        db.add(Incident(id="INC-1"))
        db.add(Action(id="a1", incident_id="INC-1", runbook="isolate-host", step="isolate", target="h01",
                      connector="ssh_linux", action="isolate", state="done", changed=1, site="site1"))
    yield s
    s.close()


def set_row(store: Store, action_id: str = "a1", **values: object) -> None:
    with store.session() as db:
        db.execute(update(Action).where(Action.id == action_id).values(**values))


def add_undo(store: Store, state: str) -> None:
    with store.session() as db:
        db.add(Action(id=f"u-{state}", incident_id="INC-1", runbook="release-host", step="release", kind="undo",
                      undo_of="a1", target="h01", connector="ssh_linux", action="isolate", state=state))


class Here:
    """A worker process's own bookkeeping of what its threads work on (SiteWorker.claim_here / unclaim)."""

    def __init__(self) -> None:
        self.running: set[str] = set()

    def claim(self, action_id: str) -> bool:
        if action_id in self.running:
            return False
        self.running.add(action_id)
        return True

    def unclaim(self, action_id: str) -> None:
        self.running.discard(action_id)


def test_one_taker_wins_and_the_other_is_told_who_holds_it(store):
    assert gate.take(store, "a1", "w1:1:1", 30) is None
    assert gate.take(store, "a1", "w2:2:2", 30) == "w1:1:1 (done)"
    gate.release(store, "a1", "w1:1:1")
    assert gate.take(store, "a1", "w2:2:2", 30) is None


def test_a_lapsed_gate_is_taken_and_a_row_mid_way_is_not(store):
    set_row(store, owner="dead:1:1", lease_until=utcnow() - timedelta(seconds=1))  # its holder died
    assert gate.take(store, "a1", "w1:1:1", 30) is None
    set_row(store, state="applying", owner="w1:1:1", lease_until=utcnow() - timedelta(seconds=1))
    # mid-way (a re-apply whose worker died): the site's sweep reconciles it first, nobody takes the gate
    assert gate.take(store, "a1", "w2:2:2", 30, states=("done", "in_doubt")) == "w1:1:1 (applying)"
    set_row(store, state="in_doubt", lease_until=None)
    assert gate.take(store, "a1", "w2:2:2", 30) == "w1:1:1 (in_doubt)"  # a re-apply: only from done
    assert gate.take(store, "a1", "w2:2:2", 30, states=("done", "in_doubt")) is None  # an undo: in doubt too


def test_a_release_under_way_is_an_undo_that_may_send_or_may_have_sent(store):
    def under_way() -> bool:
        with store.session() as db:
            return gate.release_under_way(db, "a1")
    add_undo(store, "failed")  # nothing was sent: the containment is still in force, a re-apply may go on
    add_undo(store, "done")  # finished: the action is marked undone (item by item), judged by that
    assert not under_way()
    add_undo(store, "in_doubt")  # may have reached the host
    assert under_way()


def test_an_undo_waits_for_the_gate_then_holds_it_and_opens_it_after(store):
    assert gate.take(store, "a1", "reapplier:1:1", 30) is None
    here, stopping, waits, order = Here(), threading.Event(), [], []
    waiting = threading.Event()

    def on_wait(holder: str) -> None:
        waits.append(holder)
        waiting.set()

    def undo() -> None:
        with gate.wait_for(store, "a1", "undoer:2:2", 30, within=10, stopping=stopping, claim=here.claim,
                           unclaim=here.unclaim, on_wait=on_wait, tick=0.02):
            order.append("undo")
            with store.session() as db:
                row = db.get(Action, "a1")
                assert row is not None and row.owner == "undoer:2:2" and row.lease_until is not None

    t = threading.Thread(target=undo)
    t.start()
    assert waiting.wait(10)
    time.sleep(0.1)  # several more polls of the held gate
    assert order == [] and waits == ["reapplier:1:1 (done)"]  # told once, naming the holder; nothing run
    order.append("re-apply done")
    gate.release(store, "a1", "reapplier:1:1")
    t.join(10)
    assert order == ["re-apply done", "undo"]
    with store.session() as db:
        row = db.get(Action, "a1")
        assert row is not None and row.lease_until is None  # opened after
    assert here.running == set()


def test_an_undo_that_waits_too_long_gives_up_having_sent_nothing(store):
    assert gate.take(store, "a1", "reapplier:1:1", 30) is None
    here = Here()
    ran = []
    with pytest.raises(gate.GateWait) as err, gate.wait_for(
            store, "a1", "undoer:2:2", 30, within=0.2, stopping=threading.Event(), claim=here.claim,
            unclaim=here.unclaim, tick=0.02):
        ran.append("undo")
    assert ran == [] and err.value.holder == "reapplier:1:1 (done)" and here.running == set()


def test_a_thread_of_the_same_process_is_told_apart_by_its_bookkeeping(store):
    """The lease names the process: its re-apply thread and its undo thread share the owner name, so the
    process's own record of what its threads hold is asked first."""
    here = Here()
    here.claim("a1")  # a re-apply thread of this process holds it
    with pytest.raises(gate.GateWait) as err, gate.wait_for(
            store, "a1", "w1:1:1", 30, within=0.1, stopping=threading.Event(), claim=here.claim,
            unclaim=here.unclaim, tick=0.02):
        pass
    assert err.value.holder == "this worker (another thread)"
