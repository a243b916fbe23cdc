"""The automation brake and undoing one rule's work: ``agent automation pause|resume`` (and the API) turn every
auto rule into approve for every daemon on the database, audited; ``agent release --by-rule R --since T`` undoes
everything the incidents rule R opened applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli import build_parser
from agent.commands.act import _run
from tests.unit.daemon_env import API_TOKEN, TOKEN, configure, fake_app, running, wait_for

API = {"Authorization": f"Bearer {API_TOKEN}"}
GEN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Any, Any, httpx.Client, Path]]:
    cfg, world = configure(tmp_path)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        yield daemon, world, client, cfg


def isolated(world: Any, name: str, address: str) -> bool:
    return bool(world.isolated.get(name) or world.isolated.get(address))


def test_pause_turns_auto_into_approve_and_resume_restores(env):
    _, world, client, cfg = env
    paused = client.post("/automation/pause", json={"reason": "noisy EDR rule"}, headers=API)
    assert paused.status_code == 200 and paused.json()["paused"] and paused.json()["changed_by"] == "alice"
    assert client.post("/automation/pause").status_code == 401
    client.post("/alerts/gen", json={"rule_id": "edr-1", "host": "web1"}, headers=GEN)
    pending = wait_for(lambda: client.get("/approvals", headers=API).json())
    assert "automation paused by alice" in pending[0]["why"] and "noisy EDR rule" in pending[0]["why"]
    assert not isolated(world, "web1", "10.9.0.21")
    assert client.post("/automation/resume", json={"reason": "fixed"}, headers=API).json()["paused"] is False
    client.post("/alerts/gen", json={"rule_id": "edr-2", "host": "web2"}, headers=GEN)
    wait_for(lambda: isolated(world, "web2", "10.9.0.22"))
    events = [json.loads(line) for p in sorted((cfg.parent / "var" / "audit").glob("*.jsonl"))
              for line in p.read_text().splitlines() if '"automation.' in line]
    assert [(e["event"], e["by"]) for e in events] == [("automation.paused", "alice"), ("automation.resumed", "alice")]


def test_release_by_rule_undoes_that_rules_work(env):
    daemon, world, client, cfg = env
    for i, host in enumerate(("web1", "web2")):
        client.post("/alerts/gen", json={"rule_id": f"edr-{i}", "host": host}, headers=GEN)
    wait_for(lambda: isolated(world, "web1", "10.9.0.21") and isolated(world, "web2", "10.9.0.22"))
    daemon.service.dispatcher.wait_idle(5)
    wait_for(lambda: len(daemon.app.planner().active_actions(None)) >= 2)  # both journaled as done
    args = build_parser().parse_args(["release", "--by-rule", "generic-auto", "--since", "1h", "--yes",
                                      "-c", str(cfg)])
    app = fake_app(cfg)
    app.__dict__["registry"] = daemon.app.registry
    try:
        code = _run(app, args, None)
    finally:
        app.close()
    assert code == 0
    assert not isolated(world, "web1", "10.9.0.21") and not isolated(world, "web2", "10.9.0.22")


def test_release_by_rule_needs_since(env):
    _, _, _, cfg = env
    args = build_parser().parse_args(["release", "--by-rule", "generic-auto", "--yes", "-c", str(cfg)])
    app = fake_app(cfg)
    try:
        from agent.errors import InputError
        with pytest.raises(InputError, match="--since"):
            _run(app, args, None)
    finally:
        app.close()
