"""The report from the audit records the real engine writes: contain (evidence + isolate), facts, release.

A Massachusetts business (organisation facts in agent.yaml). Three hosts: crm-a and crm-b hold copies of the
same customer data set, payroll its own. Every count must equal the inventory's numbers after contain and release,
and an inventory edited afterwards must leave the report unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from agent.audit import records
from agent.report import build_report, from_records
from agent.runbook import find_runbook
from tests.unit.engine_env import make_env

INC = "INC-MA-1"
INVENTORY = """\
management:
  addresses: [10.9.0.10]
defaults:
  ssh_linux:
    credentials: {username: root, private_key: file:/nonexistent/key}
hosts:
  crm-a: {address: 10.9.0.21, os: linux, data: [ssn, financial_account], residents: {MA: 1225, CA: 200, NH: 40},
          dataset: crm}
  crm-b: {address: 10.9.0.22, os: linux, data: [ssn, financial_account], residents: {MA: 1225, CA: 200, NH: 40},
          dataset: crm}
  payroll: {address: 10.9.0.23, os: linux, data: [ssn, tax], residents: {MA: 310, TX: 250}}
  backup: {address: 10.9.0.24, os: linux, data: [health], residents: {VT: 1001}}
"""
EXPECTED = {"MA": 1535, "CA": 200, "NH": 40, "TX": 250}


def _run(app: Any, book: str, hosts: list[str], reason: str) -> None:
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), hosts, {})
    engine = app.engine()
    engine.journal.open_incident(INC, title="CRM exfiltration", reason="EDR alert: beacon on crm-a",
                                 requested_by=app.actor, trigger="cli",
                                 discovered_at=dt.datetime(2026, 11, 20, 14, 5, tzinfo=dt.UTC))
    engine.execute(plan, INC, reason=reason)


@pytest.fixture()
def incident(tmp_path: Path) -> dict[str, Any]:
    app, _world = make_env(tmp_path)
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    with (tmp_path / "agent.yaml").open("a") as handle:
        handle.write("timezone: America/New_York\norganisation:\n  name: Example Dental Group LLC\n"
                     "  hipaa_covered_entity: false\n  sec_registrant: true\n")
    app.__dict__.pop("settings", None)
    try:
        _run(app, "isolate-host", ["crm-a", "crm-b", "payroll"], "EDR alert: beacon on crm-a")
        from agent.report.facts import facts_record

        import argparse

        args = argparse.Namespace(
            determined="2026-11-23T10:00:00-05:00", alert_time="2026-11-20T13:58:00Z", discovered=None,
            consumers_notified=None, material=None, clock_start=None, affected=None, residents=[], data=[],
            org=["glba_financial_institution=yes"],
            pending=["whether law enforcement asks to delay notice (c. 93H sec. 4)"],
            source="forensic report v1 (Acme DFIR)", confidence="high")
        app.audit.record("incident.facts", incident=INC, **facts_record(args, recorded_by="counsel@firm"))
        _run(app, "release-host", ["crm-a", "crm-b", "payroll"], "forensics complete, cleared by IR lead")
        audit_dir = app.settings.audit_dir
    finally:
        app.close()
    return {"audit": audit_dir, "base": tmp_path}


def _report(audit_dir: Path) -> Any:
    data = from_records(records(audit_dir, INC), INC, {}, timezone="America/New_York")
    return build_report(data, generated_at=dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC))


def test_counts_equal_inventory_after_contain_and_release(incident: dict[str, Any]) -> None:
    """Six apply actions and three releases later, each state's count is the inventory's number (crm once)."""
    data = _report(incident["audit"]).data
    assert data.residents_by_state == EXPECTED
    assert data.total_affected == sum(EXPECTED.values())
    assert data.data_categories == ["financial_account", "ssn", "tax"]


def test_inventory_edited_afterwards_leaves_report_unchanged(incident: dict[str, Any]) -> None:
    """The report reads the scope snapshots in the log, not today's inventory."""
    before = json.dumps(_report(incident["audit"]).content(), sort_keys=True, default=str)
    (incident["base"] / "inventory.yaml").write_text(INVENTORY.replace("1225", "99999").replace("[ssn, tax]",
                                                                                                "[health]"))
    after = json.dumps(_report(incident["audit"]).content(), sort_keys=True, default=str)
    assert before == after


def test_action_cards_why_change_and_release(incident: dict[str, Any]) -> None:
    """Each action shows its own reason, what it changed, and the isolate card says it was released."""
    data = _report(incident["audit"]).data
    isolates = [a for a in data.actions if a.action == "isolate" and a.kind != "undo"]
    releases = [a for a in data.actions if a.kind == "undo"]
    assert len(isolates) == 3 and len(releases) == 3
    for card in isolates:
        assert card.why == "EDR alert: beacon on crm-a"
        assert card.change and "isolated" in card.change
        assert card.undo_status.startswith("released") and "forensics complete" in card.undo_status
        assert card.status == "done"
    assert all(r.why == "forensics complete, cleared by IR lead" for r in releases)


def test_clock_and_organisation_facts_with_sources(incident: dict[str, Any]) -> None:
    """Organisation facts come from agent.yaml (snapshotted) and incident facts, each with its source."""
    report = _report(incident["audit"])
    content = report.content()
    org = {f["key"]: f for f in content["organisation_facts"]}
    assert content["organisation"] == "Example Dental Group LLC"
    assert org["sec_registrant"]["value"] is True and "agent.yaml" in org["sec_registrant"]["source"]
    assert org["glba_financial_institution"]["value"] is True
    assert "forensic report v1" in org["glba_financial_institution"]["source"]
    clock = {c["name"]: c for c in content["clock"]["facts"]}
    assert clock["determination"]["time_utc"] == "2026-11-23T15:00:00Z"
    assert "forensic report v1" in clock["determination"]["source"] and clock["determination"]["confidence"] == "high"
    assert clock["alert_event"]["time_utc"] == "2026-11-20T13:58:00Z"
    assert content["clock"]["start"] == "discovery"
    texts = [p["text"] for p in content["pending_decisions"]]
    assert any("law enforcement" in t for t in texts)
    assert any("materiality" in u for u in content["unknown_facts"])  # an SEC registrant: 8-K clock unknown


def test_json_report_matches_the_hand_table(incident: dict[str, Any]) -> None:
    """`--format json` content: Texas AG (250 >= 250) due 30 days after determination; CA AG threshold not met."""
    content = _report(incident["audit"]).content()
    rows = {(n["jurisdiction"], n["party"]): n for n in content["notifications"]}
    tx_ag = next(v for (j, p), v in rows.items() if j == "Texas" and "Attorney General" in p)
    assert tx_ag["status"] == "applies" and tx_ag["deadline"].startswith("2026-12-23")
    ca_ag = next(v for (j, p), v in rows.items() if j == "California" and "Attorney General" in p)
    assert ca_ag["status"] == "threshold not met"
    nh_cra = next(v for (j, p), v in rows.items() if j == "New Hampshire" and "consumer reporting" in p)
    assert nh_cra["status"] == "threshold not met"
    assert content["marking"].startswith("Privileged & Confidential")
    assert content["scope"]["residents_by_state"] == EXPECTED
    assert content["narrative"]["what_was_done"] and content["narrative"]["due_next"]
    assert any("IC3" in n["party"] for n in content["notifications"])


def test_cli_facts_then_report_json(incident: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """`agent incidents facts` (count correction, clock start) then `agent report --format json` on the files."""
    from agent.cli import main

    cfg = str(incident["base"] / "agent.yaml")
    assert main(["incidents", "facts", INC, "--residents", "MA=1300", "--clock-start", "alert", "--source",
                 "forensic report v2", "--confidence", "high", "--config", cfg]) == 0
    out = incident["base"] / "report.json"
    assert main(["report", "--incident", INC, "--format", "json", "-o", str(out), "--config", cfg]) == 0
    content = json.loads(out.read_text())
    assert content["scope"]["residents_by_state"]["MA"] == 1300
    assert "forensic report v2" in content["scope"]["count_sources"]["MA"]
    assert content["clock"]["start"] == "alert_event"
    assert content["clock"]["used_for_discovery_deadlines"] == "2026-11-20T13:58:00Z"
    assert content["organisation"] == "Example Dental Group LLC"
    assert content["audit"]["ok"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["--residents", "Mass=12"], "--residents: 'Mass=12' is not STATE=N"),
    (["--data", "financial"], "unknown data category 'financial'"),
    (["--org", "hipaa=yes"], "--org: 'hipaa=yes' is not FACT=yes|no"),
    (["--determined", "2026-11-23"], "--determined: '2026-11-23' needs a time zone offset"),
    ([], "nothing to record"),
])
def test_cli_facts_refuses_bad_input(incident: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                     argv: list[str], message: str) -> None:
    """Bad facts are refused with the option and value named (exit 2), and nothing is recorded."""
    from agent.cli import main

    before = len(list(records(incident["audit"], INC)))
    code = main(["incidents", "facts", INC, *argv, "--config", str(incident["base"] / "agent.yaml")])
    assert code == 2 and message in capsys.readouterr().err
    assert len(list(records(incident["audit"], INC))) == before


def test_cli_facts_system_adds_a_data_set(incident: dict[str, Any]) -> None:
    """`--system backup` (found involved later) snapshots its data set into the scope, with the facts' source."""
    from agent.cli import main

    cfg = str(incident["base"] / "agent.yaml")
    assert main(["incidents", "facts", INC, "--system", "backup", "--source", "forensic report v3",
                 "--config", cfg]) == 0
    data = _report(incident["audit"]).data
    assert data.residents_by_state == {**EXPECTED, "VT": 1001} and "health" in data.data_categories
    assert main(["incidents", "facts", INC, "--system", "nosuch", "--config", cfg]) != 0


def test_cli_export_then_verify_without_configuration(incident: dict[str, Any], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`agent audit export --out x.zip` (key, evidence from agent.yaml), then `agent audit verify x.zip` where no
    agent.yaml exists (counsel's machine): exit 0 and the incident's opening record is there."""
    from agent.cli import main

    cfg = str(incident["base"] / "agent.yaml")
    out = tmp_path / "inc.zip"
    assert main(["audit", "--config", cfg, "export", "--incident", INC, "--out", str(out)]) == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENT_CONFIG", raising=False)
    capsys.readouterr()
    assert main(["audit", "verify", str(out)]) == 0, capsys.readouterr()
    assert "NOT proven: without a trust anchor" in capsys.readouterr().out
