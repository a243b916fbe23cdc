"""`block-ip A B C` as one journaled action with per-address items, against the vendor CLI simulator.

The engine, planner and journal are the real ones; the device is the IOS simulator (netmiko's real driver over
SSH on loopback), so the per-item results are read from what the real connector reports.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
from sqlalchemy import select

from agent.app import App
from agent.runbook import find_runbook
from agent.store import Action, ActionItem, Incident
from tests.doubles.vendor_cli import CliSimulator, write_known_hosts

REPO = Path(__file__).resolve().parents[3]
ADDRS = ["45.77.1.2", "45.77.1.3/32", "45.77.9.0/24"]


@pytest.fixture
def env(tmp_path: Path, sim_factory: Callable[..., CliSimulator], host_key: paramiko.PKey,
        monkeypatch: pytest.MonkeyPatch) -> Any:
    sim = sim_factory("cisco_ios")
    kh = write_known_hosts(tmp_path / "known_hosts", [(sim.port, host_key)])
    monkeypatch.setenv("SIM_PW", "s3cret-pw")
    monkeypatch.setenv("SIM_EN", "en-s3cret")
    (tmp_path / "runbooks").mkdir()
    for name in ("block-ip.yaml", "unblock-ip.yaml"):
        shutil.copy(REPO / "agent" / "data" / "runbooks" / name, tmp_path / "runbooks" / name)
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [10.9.0.10]\n"
        "devices:\n  edge1:\n    address: 127.0.0.1\n    device_type: cisco_ios\n    edge: true\n"
        f"    port: {sim.port}\n    options: {{acl: OUTSIDE-IN, acl_out: INSIDE-IN}}\n"
        "    credentials: {username: admin, password: 'env:SIM_PW', secret: 'env:SIM_EN'}\n")
    (tmp_path / "agent.yaml").write_text(
        "inventory: inventory.yaml\nrunbooks: runbooks\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        f"evidence_dir: var/evidence\nssh: {{known_hosts: {kh}}}\nengine: {{retries: 1, backoff: 0.01}}\n")
    app = App(config_path=tmp_path / "agent.yaml", actor="tester@lab")
    yield app, sim
    app.close()


def run(app: App, book: str, subjects: list[str], incident: str, **params: Any) -> Any:
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), subjects, params)
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="test", requested_by=app.actor, trigger="cli")
    return plan, engine.execute(plan, incident)


def items(app: App) -> list[tuple[str, str, str, str, int | None, bool]]:
    with app.store.session() as s:
        return [(a.action, i.requested, i.canonical, i.state, i.changed, i.undone_at is not None)
                for a, i in s.execute(select(Action, ActionItem).join(ActionItem).where(Action.kind == "apply")
                                      .order_by(Action.seq, ActionItem.position))]


def test_block_three_is_one_action_one_session_with_items(env):
    """Three addresses on one device: one action, one SSH session, one save; each address journaled as an item
    with its canonical CIDR and the spelling the user gave; the incident is contained."""
    app, sim = env
    plan, result = run(app, "block-ip", ADDRS, "INC-B")
    assert [pa.action for pa in plan.actions] == ["block_ip"] and plan.actions[0].args["addresses"] == [
        "45.77.1.2", "45.77.1.3", "45.77.9.0/24"]
    assert result.status == "done", result.to_dict()
    assert sim.sessions == 1
    assert items(app) == [
        ("block_ip", "45.77.1.2", "net:45.77.1.2/32", "done", 1, False),
        ("block_ip", "45.77.1.3/32", "net:45.77.1.3/32", "done", 1, False),
        ("block_ip", "45.77.9.0/24", "net:45.77.9.0/24", "done", 1, False)]
    with app.store.session() as s:
        assert s.get(Incident, "INC-B").status == "contained"
    assert [i["state"] for i in result.outcomes[0].items] == ["done"] * 3


def test_unblock_one_address_keeps_the_others_active(env):
    """`unblock-ip` of one address (spelled differently) closes that item only; release then undoes the
    remaining two and leaves the unblocked one alone."""
    app, _sim = env
    run(app, "block-ip", ADDRS, "INC-B")
    _, result = run(app, "unblock-ip", ["45.77.1.2/32"], "INC-U")
    assert result.status == "done"
    from agent.commands.act import _close_lifted
    plan = app.planner().build(find_runbook(app.settings.runbooks, "unblock-ip"), ["45.77.1.2/32"])
    plan.actions[0].action_id = result.outcomes[0].action_id
    _close_lifted(app, app.engine(), plan, result)
    state = {(a, r): u for a, r, _c, _s, _ch, u in items(app) if a == "block_ip"}
    assert state == {("block_ip", "45.77.1.2"): True, ("block_ip", "45.77.1.3/32"): False,
                     ("block_ip", "45.77.9.0/24"): False}
    active = app.planner().active_actions(None, "block_ip")
    assert len(active) == 1  # still active for the two other addresses
    undo = app.planner().build_undo(active, "release-incident")
    assert undo.actions[0].args["addresses"] == ["45.77.1.3", "45.77.9.0/24"]
    result = app.engine().execute(undo, "INC-B")
    assert result.status == "done", result.to_dict()
    assert app.planner().active_actions(None, "block_ip") == []
    assert all(u for a, _r, _c, _s, ch, u in items(app) if a == "block_ip"), items(app)
