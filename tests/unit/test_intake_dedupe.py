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
