"""Resolved alerts: recorded and linked by default (never undo anything); a rule saying ``on_resolved: release``
releases what its incident applied when the sender reports the condition resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.unit.daemon_env import TOKEN, configure, running, wait_for

GEN = {"Authorization": f"Bearer {TOKEN}"}
RULES = """\
  - name: miner-release
    match: {source: am, rule_id: "MinerRelease"}
    runbook: isolate-host
    params: {capture_evidence: false}
    on_resolved: release
  - name: miner-keep
    match: {source: am, rule_id: "MinerKeep"}
    runbook: isolate-host
    params: {capture_evidence: false}
"""


def _group(name: str, host: str, status: str, fingerprint: str) -> dict[str, Any]:
    return {"version": "4", "status": status, "alerts": [
        {"status": status, "labels": {"alertname": name, "instance": f"{host}:9100", "severity": "critical"},
         "startsAt": "2026-12-04T18:00:00Z", "fingerprint": fingerprint}]}


def test_on_resolved_release_and_default_record(tmp_path: Path) -> None:
    cfg, world = configure(tmp_path, rules_extra=RULES)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        for name, host, fp in (("MinerRelease", "web1", "f-1"), ("MinerKeep", "web2", "f-2")):
            assert client.post("/alerts/am", json=_group(name, host, "firing", fp), headers=GEN).status_code == 202
        wait_for(lambda: world.isolated.get("web1") and world.isolated.get("web2"))
        daemon.service.dispatcher.wait_idle(5)
        wait_for(lambda: len(daemon.app.planner().active_actions(None)) >= 2)
        for name, host, fp in (("MinerRelease", "web1", "f-1"), ("MinerKeep", "web2", "f-2")):
            answer = client.post("/alerts/am", json=_group(name, host, "resolved", fp), headers=GEN).json()
            assert answer["disposition"] == "resolved"
        wait_for(lambda: world.isolated.get("web1") is False)  # released: the rule says so
        daemon.service.dispatcher.wait_idle(5)
        assert world.isolated.get("web2") is True  # recorded and linked only (the default)


def test_on_resolved_value_is_checked(tmp_path: Path) -> None:
    import pytest

    from agent.errors import ConfigError
    cfg, _ = configure(tmp_path, rules_extra=RULES.replace("on_resolved: release", "on_resolved: maybe"))
    from agent.intake.rules import load_rules
    with pytest.raises(ConfigError, match="on_resolved"):
        load_rules(cfg.parent / "rules.yaml", cfg.parent / "runbooks")
