"""`status --verify` reads containments back from the targets; `release --forget` closes a gone host's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.containments import forget, verify_all
from agent.errors import InputError
from agent.runbook import find_runbook
from agent.store import Action, ActionItem
from tests.unit.engine_env import INVENTORY, make_env


@pytest.fixture
def env(tmp_path: Path):
    app, world = make_env(tmp_path)
    yield app, world, tmp_path
    app.close()


def _contain(app, hosts: list[str], incident: str = "INC-C") -> None:
    plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), hosts,
                               {"capture_evidence": False})
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="t", requested_by=app.actor, trigger="cli")
    assert engine.execute(plan, incident).status == "done"


def _events(tmp: Path) -> list[dict]:
    out = []
    for f in sorted((tmp / "var" / "audit").glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def test_verify_reports_drift_of_a_rule_removed_behind_the_agents_back(env):
    """web1 and web2 isolated; someone lifts web2's isolation by hand: --verify names web2, audits the drift."""
    app, world, tmp = env
    _contain(app, ["web1", "web2"])
    world.isolated["web2"] = False
    checks = {c.action.target: c for c in verify_all(app)}
    assert checks["web1"].state == "in_effect"
    assert checks["web2"].state == "drift" and checks["web2"].drifted == ["web2"]
    drift = [e for e in _events(tmp) if e.get("event") == "containment.drift"]
    assert [e.get("target") for e in drift] == ["web2"]


def test_verify_of_a_host_gone_from_the_inventory_says_how_to_forget_it(env):
    app, _world, tmp = env
    _contain(app, ["web3"])
    (tmp / "inventory.yaml").write_text(INVENTORY.replace("  web3: {address: 10.9.0.23, os: linux}\n", ""))
    app.__dict__.pop("inventory", None)
    [check] = verify_all(app)
    assert check.state == "unverified" and "release --forget web3" in check.summary


def test_forget_closes_without_contacting_and_is_audited(env):
    """--forget closes the host's containments (items too) with no connection opened; the reason is audited."""
    app, world, tmp = env
    _contain(app, ["web1", "web2"])
    opens = world.opens
    with pytest.raises(InputError, match="--reason"):
        forget(app, "web1", " ")
    closed = forget(app, "web1", "reimaged after the breach")
    assert len(closed) == 1 and world.opens == opens and world.isolated["web1"]  # never contacted
    assert [r.target for r in app.planner().active_actions(None)] == ["web2"]
    with app.store.session() as s:
        items = s.scalars(select(ActionItem).join(Action).where(Action.target == "web1")).all()
        assert all(i.undone_at is not None for i in items)
    [event] = [e for e in _events(tmp) if e.get("event") == "containment.forgotten"]
    assert event["target"] == "web1" and event["reason"] == "reimaged after the breach"


def test_forget_on_the_command_line_for_a_host_no_longer_in_the_inventory(env):
    """The real CLI: the host was removed from the inventory; --forget still closes it, and status is clear."""
    app, _world, tmp = env
    _contain(app, ["web3"])
    app.close()
    (tmp / "inventory.yaml").write_text(INVENTORY.replace("  web3: {address: 10.9.0.23, os: linux}\n", ""))
    env = {**os.environ, "NO_COLOR": "1", "AGENT_CONFIG": str(tmp / "agent.yaml")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True, text=True,
                              check=False)

    res = cli("release", "--forget", "web3", "--yes")
    assert res.returncode == 2 and "--reason" in res.stderr
    res = cli("release", "--forget", "web3", "--reason", "decommissioned", "--yes")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "without contacting" in res.stdout
    status = cli("status", "--json")
    assert json.loads(status.stdout)["active"] == []
