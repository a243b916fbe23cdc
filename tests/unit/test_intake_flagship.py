"""The shipped flagship rule (config/rules.yaml ``wazuh-bruteforce-success`` → runbook
``contain-compromised-host``) contains the host with the shipped inventory, whatever source address the alert
carries: a block that cannot apply (private or link-local address, protected range) is skipped and
said so in the plan (``on_refused: skip``); it never refuses the isolation.

Found: the shipped inventory made the only edge firewall protected, and any refused step refused the whole
plan — the flagship rule could never contain anything when the alert carried a source IP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.app import App
from agent.errors import GuardRefused
from agent.intake.request import Source, parse_alerts
from agent.intake.rules import HostTags
from agent.runbook import find_runbook, load_runbook

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data
CONFIG = REPO / "agent" / "data" / "config"  # the annotated example configuration
CORPUS = REPO / "tests" / "corpus" / "alerts"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    """The shipped configuration as is, with its journal and audit log moved to a scratch directory."""
    tmp = tmp_path_factory.mktemp("shipped")
    text = (CONFIG / "agent.yaml").read_text()
    text = text.replace("inventory: inventory.yaml", f"inventory: {CONFIG / 'inventory.yaml'}")
    text = text.replace("runbooks: ../runbooks", f"runbooks: {RUNBOOKS}")
    text = text.replace("database: ../var/agent.db", f"database: {tmp / 'agent.db'}")
    text = text.replace("audit_dir: ../var/audit", f"audit_dir: {tmp / 'audit'}")
    text = text.replace("rules: rules.yaml", f"rules: {CONFIG / 'rules.yaml'}")
    (tmp / "agent.yaml").write_text(text)
    return App(config_path=tmp / "agent.yaml", actor="test")


def _plan(app: App, source_ip: str):
    book = find_runbook(app.settings.runbooks, "contain-compromised-host")
    return app.planner().build(book, ["web01"], {"user": "jdoe", "source_ip": source_ip})


@pytest.mark.parametrize("address", ["10.77.1.130", "169.254.10.10", "192.0.2.3"])
def test_unblockable_source_is_skipped_and_the_host_still_isolated(app: App, address: str) -> None:
    plan = _plan(app, address)
    steps = [a.step.id for a in plan.actions]
    assert "isolate" in steps and "block-source" not in steps
    [skip] = plan.skipped
    assert skip["step"] == "block-source" and skip["target"] == address and skip["reason"]
    assert any(n.startswith("block-source: skipped (on_refused: skip)") for n in plan.notes)
    assert plan.to_dict()["skipped"] == plan.skipped


def test_public_source_is_blocked_on_the_edge_firewall(app: App) -> None:
    plan = _plan(app, "8.8.4.4")
    assert [(a.step.id, a.target.name) for a in plan.actions if a.step.id in ("isolate", "block-source")] == [
        ("isolate", "web01"), ("block-source", "fw-edge")]
    assert plan.skipped == []


def test_the_flagship_rule_routes_a_wazuh_alert(app: App) -> None:
    """The shipped rule matches Wazuh's sshd brute-force-then-success alert for a tagged host."""
    from agent.intake.auth import SourceAuth
    from agent.intake.config import SourceConfig
    from agent.intake.rules import load_rules
    from agent.secrets import parse_ref
    rules = load_rules(app.settings.rules, app.settings.runbooks)
    alert = json.loads((CORPUS / "wazuh-alert.json").read_text())["body"]
    alert = {**alert, "rule": {**alert["rule"], "id": "5712", "level": 10}, "agent": {"id": "003", "name": "web01"},
             "data": {"srcip": "10.77.1.130", "dstuser": "jdoe"}}
    import os
    os.environ["FLAGSHIP_TOKEN"] = "t0k"
    auth = SourceAuth(SourceConfig("wazuh", "wazuh", token=parse_ref("env:FLAGSHIP_TOKEN", REPO)))
    [p] = parse_alerts(Source("wazuh", "wazuh", auth), {"authorization": "Bearer t0k"}, json.dumps(alert).encode())
    routed = rules.route(p.alert, HostTags(app.inventory))
    assert routed is not None and routed[0].name == "wazuh-bruteforce-success" and routed[1] == "web01"
    plan = app.planner().build(find_runbook(app.settings.runbooks, routed[0].runbook), [routed[1]],
                               routed[0].bind(p.alert))
    assert "isolate" in [a.step.id for a in plan.actions]


def test_abort_is_the_default(tmp_path: Path, app: App) -> None:
    """Without on_refused: skip, one refused step still refuses the whole plan (nothing half-applied)."""
    text = (RUNBOOKS / "contain-compromised-host.yaml").read_text().replace("on_refused: skip", "")
    (tmp_path / "strict.yaml").write_text(text.replace("name: contain-compromised-host", "name: strict"))
    book = load_runbook(tmp_path / "strict.yaml")
    with pytest.raises(GuardRefused):
        app.planner().build(book, ["web01"], {"user": "jdoe", "source_ip": "192.0.2.3"})


def test_shipped_elastic_rule_matches_by_rule_name(app: App) -> None:
    """Elastic's rule ids are UUIDs: the shipped identity rule matches the rule *name*, and targets the user
    (the alert names no host)."""
    from agent.intake.rules import load_rules
    from agent.intake.normalizers import normalize
    rules = load_rules(app.settings.rules, app.settings.runbooks)
    body = json.loads((CORPUS / "elastic-webhook-connector.json").read_text())["body"]
    alert = normalize("elastic", body, "elastic")[0]
    routed = rules.route(alert, HostTags(app.inventory))
    assert routed is not None and routed[0].name == "elastic-impossible-travel" and routed[1] == "jdoe"
