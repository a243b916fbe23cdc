"""Dedupe claims belong only to incidents that act or wait for a person, and they live in the database.

Found: a dry-run rehearsal, a refused plan or a denied approval held the (runbook, target) claim for the whole
window, so a later alert under an auto rule for the same host was silently "deduped" and nothing ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent.intake.model import NormalizedAlert
from agent.intake.tables import IntakeClaim
from agent.intake.writer import Decision
from agent.store import Alert, Incident, utcnow
from tests.unit.daemon_env import API_TOKEN, TOKEN, configure, running, wait_for

API = {"Authorization": f"Bearer {API_TOKEN}"}
GEN = {"Authorization": f"Bearer {TOKEN}"}
EXTRA = """\
  - name: rehearse
    match: {source: gen, rule_id: "rehearse-*"}
    runbook: isolate-host
    params: {capture_evidence: false}
    policy: dry-run
  - name: ask-first
    match: {source: gen, rule_id: "ask-*"}
    runbook: isolate-host
    params: {capture_evidence: false}
    policy: approve
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Any, Any, httpx.Client, Path]]:
    cfg, world = configure(tmp_path, rules_extra=EXTRA)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        yield daemon, world, client, tmp_path


def post(client: httpx.Client, rule_id: str, host: str = "web1") -> dict[str, Any]:
    res = client.post("/alerts/gen", json={"rule_id": rule_id, "host": host}, headers=GEN)
    assert res.status_code == 202, res.text
    return dict(res.json())


def incident_decision(client: httpx.Client, incident: str) -> dict[str, Any]:
    return dict(client.get(f"/incidents/{incident}", headers=API).json())


def test_dry_run_rehearsal_does_not_swallow_a_real_alert(env):
    daemon, world, client, _ = env
    rehearsal = post(client, "rehearse-1")
    daemon.service.dispatcher.wait_idle(5)
    real = post(client, "edr-1")
    assert real["disposition"] == "accepted" and real["incident"] != rehearsal["incident"]
    wait_for(lambda: world.isolated.get("10.9.0.21") or world.isolated.get("web1"))


def test_refused_plan_holds_no_claim(env):
    """dc1 is protected: that plan is refused; the claim is given up, nothing stays in the database."""
    daemon, _, client, _ = env
    post(client, "edr-1", "dc1")
    daemon.service.dispatcher.wait_idle(5)
    with daemon.app.store.session() as s:
        assert list(s.scalars(select(IntakeClaim))) == []


def test_denied_approval_frees_the_key(env):
    _, world, client, _ = env
    first = post(client, "ask-1", "web2")
    approval = wait_for(lambda: client.get("/approvals", headers=API).json())
    assert client.post(f"/approvals/{approval[0]['id']}/deny", json={"reason": "no"}, headers=API).status_code == 200
    assert incident_decision(client, first["incident"])["status"] == "closed"  # denied: nothing stays open
    second = post(client, "edr-2", "web2")
    assert second["disposition"] == "accepted" and second["incident"] != first["incident"]
    wait_for(lambda: world.isolated.get("10.9.0.22") or world.isolated.get("web2"))


def test_storm_against_an_undecided_dry_run_is_decided_again(env):
    """Alerts deduped against an incident before it was decided get their own incident once it did not act."""
    daemon, world, _, _ = env
    svc = daemon.service
    with daemon.app.store.session() as s:  # an incident that was open when the storm began, then did not act
        s.add(Incident(id="INC-rehearsal", title="t", status="closed"))
    svc.dispatcher._void.add("INC-rehearsal")
    alert = NormalizedAlert(source="gen", rule_id="edr-3", severity=50, host="web3")
    d = Decision(alert_id="a-storm-1", alert=alert, digest="0" * 64, received_at=utcnow(), disposition="deduped",
                 incident="INC-rehearsal", rule=svc.rules.named("generic-auto"), target="web3")
    svc.writer.submit([d]).result(5)  # stored as the request path stored it, then decided
    svc.dispatcher.wait_idle(5)
    with daemon.app.store.session() as s:
        row = s.get(Alert, "a-storm-1")
        assert row is not None and row.disposition != "deduped" and row.incident_id != "INC-rehearsal"
    wait_for(lambda: world.isolated.get("10.9.0.23") or world.isolated.get("web3"))


def test_two_daemons_on_one_database_agree(tmp_path: Path):
    """The second daemon (fresh memory) sees the first one's acting claim in the database and joins it."""
    cfg, world = configure(tmp_path, rules_extra=EXTRA)
    with running(cfg) as one, httpx.Client(base_url=one.url, timeout=10) as c1:
        first = post(c1, "ask-1", "web2")  # waits for approval: holds the claim
        wait_for(lambda: c1.get("/approvals", headers=API).json())
        with running(cfg) as two, httpx.Client(base_url=two.url, timeout=10) as c2:
            two.service.dedupe._claims.clear()  # as if it had started before the claim was taken
            second = post(c2, "edr-9", "web2")
            two.service.dispatcher.wait_idle(5)
            view = wait_for(lambda: (v := incident_decision(c2, second["incident"])) and v["status"] == "closed"
                            and v)
            assert view["status"] == "closed"
            with two.app.store.session() as s:
                claim = s.scalars(select(IntakeClaim)).one()
            assert claim.incident_id == first["incident"]
            assert not (world.isolated.get("10.9.0.22") or world.isolated.get("web2"))


def test_acting_claims_share_the_writers_commit(env):
    """An acting incident's claim is written in the alert writer's group commit, not in a transaction of the
    dispatcher's own: with SQLite ``synchronous=FULL`` every commit is an fsync, and a second writing thread makes
    the webhook's commits wait behind SQLite's one write lock. Counted with a SQLAlchemy statement listener:
    the dispatcher thread itself writes nothing, the claims are written by the writer thread."""
    import threading

    from sqlalchemy import event

    daemon, world, client, _ = env
    engine = daemon.app.store.engine
    writes: list[tuple[str, str]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            writes.append((threading.current_thread().name, " ".join(statement.split()[:3])))
    event.listen(engine, "before_cursor_execute", seen)
    try:
        for i, host in enumerate(("web1", "web2", "web3")):
            post(client, f"edr-{i}", host)
        wait_for(lambda: all(world.isolated.get(a) or world.isolated.get(h) for a, h in (
            ("10.9.0.21", "web1"), ("10.9.0.22", "web2"), ("10.9.0.23", "web3"))))
        daemon.service.dispatcher.wait_idle(5)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    claims = [thread for thread, statement in writes if "intake_claims" in statement]
    assert len(claims) == 3 and set(claims) == {"alert-writer"}, writes
    assert [w for w in writes if w[0] == "alert-dispatcher"] == []


def lost_claim_race_keeps_the_transaction(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another daemon commits its claim between this one's read and INSERT, inside the writer's transaction:
    the claim answers "held by the other incident", and the transaction's other writes still commit (PostgreSQL
    aborts a whole transaction on a failed statement unless it ran in a savepoint; SQLite aborts the statement)."""
    from datetime import timedelta

    from sqlalchemy import insert

    from agent.intake import claims
    from agent.intake.tables import IntakeIncident, IntakeSetting, create_tables
    from agent.store import Store

    store = Store(url)
    create_tables(store.engine)
    now = utcnow()
    with store.engine.begin() as conn:  # the other daemon's acting incident and its claim, committed
        conn.execute(insert(IntakeIncident).values(incident_id="INC-A", runbook="isolate-host", target="web1",
                                                   rule="r", policy="auto", alert_id="a", decision="executing"))
        conn.execute(insert(IntakeClaim).values(runbook="isolate-host", target="web1", incident_id="INC-A",
                                                since=now))
    reads: list[int] = []
    real = claims.holder

    def read_before_the_other_insert(conn: Any, runbook: str, target: str) -> Any:
        reads.append(1)
        return None if len(reads) == 1 else real(conn, runbook, target)
    monkeypatch.setattr(claims, "holder", read_before_the_other_insert)
    try:
        with store.engine.begin() as conn:  # the writer's group commit: an alert's row, then the claim
            conn.execute(insert(IntakeSetting).values(key="written-before", value="kept"))
            assert claims.claim(conn, "isolate-host", "web1", "INC-B", now, timedelta(minutes=10)) == (False, "INC-A")
        with store.engine.connect() as conn:
            assert conn.execute(select(IntakeSetting.value)).scalars().all() == ["kept"]
            assert conn.execute(select(IntakeClaim.incident_id)).scalars().all() == ["INC-A"]
    finally:
        store.engine.dispose()


def test_lost_claim_race_keeps_the_writers_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lost_claim_race_keeps_the_transaction(f"sqlite:///{tmp_path / 'agent.db'}", monkeypatch)


def test_claim_first_in_the_writers_transaction_commits_with_it(tmp_path: Path) -> None:
    """SQLite through pysqlite: a SAVEPOINT before the transaction's first write opens a transaction of its own and
    its RELEASE commits it — one more fsync, the thing claiming in the group commit avoids. The claim as the
    first statement leaves the writer's transaction open, so it commits with the rest of the group."""
    from datetime import timedelta

    from agent.intake import claims
    from agent.intake.tables import create_tables
    from agent.store import Store

    store = Store(f"sqlite:///{tmp_path / 'agent.db'}")
    create_tables(store.engine)
    try:
        with store.engine.begin() as conn:
            assert claims.claim(conn, "isolate-host", "web1", "INC-B", utcnow(), timedelta(minutes=10)) == (
                True, "INC-B")
            assert conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
    finally:
        store.engine.dispose()
