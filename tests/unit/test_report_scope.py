"""Scope and counts: people counted once per data set, read from snapshots in the audit log, not today's inventory.

The incident: a Massachusetts business; `crm` (two hosts holding the same customer table) and `payroll` are touched.
It is contained (evidence + isolate per host) and then released — five actions per host in all.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.audit import AuditLog, records
from agent.report import build_report, from_records
from agent.report.scope import snapshot_scope

INC = "INC-MA-7"


def _entry(name: str, data: list[str], residents: dict[str, int | None], dataset: str | None = None) -> Any:
    return SimpleNamespace(name=name, kind="host", data=tuple(data), residents=residents, resident_counts=residents,
                           dataset=dataset)


INVENTORY = {
    "crm-a": _entry("crm-a", ["ssn", "financial_account"], {"MA": 1225, "CA": 200, "NH": 40}, "crm"),
    "crm-b": _entry("crm-b", ["ssn", "financial_account"], {"MA": 1225, "CA": 200, "NH": 40}, "crm"),
    "payroll": _entry("payroll", ["ssn", "tax"], {"MA": 310, "TX": 250}),
}
EXPECTED = {"MA": 1535, "CA": 200, "NH": 40, "TX": 250}  # crm once (1225+200+40) + payroll (310+250)


def _write(audit_dir: Path, inventory: dict[str, Any]) -> None:
    with AuditLog(audit_dir, actor="alice") as log:
        log.record("incident.opened", incident=INC, title="crm exfiltration", reason="EDR alert",
                   requested_by="alice", trigger="alert", discovered_at="2026-11-20T14:05:00Z")
        for phase, actions in (("contain", ("collect_evidence", "isolate")), ("release", ("release",))):
            plan = [{"action_id": f"{phase}-{host}-{a}", "target": host, "connector": "ssh_linux", "action": a}
                    for host in inventory for a in actions]
            log.record("plan.created", incident=INC, actions=plan, requested_by="alice")
            # what Engine.execute writes right after plan.created, from the inventory as it is at that moment
            log.record("incident.scope", incident=INC, cause="plan",
                       **snapshot_scope(inventory[spec["target"]] for spec in plan))
            for spec in plan:
                log.record("action.done", incident=INC, action_id=spec["action_id"], target=spec["target"],
                           action=spec["action"], summary="ok")


def _data(audit_dir: Path) -> Any:
    return from_records(records(audit_dir, INC), INC, {}, timezone="America/New_York")


def test_counts_once_per_data_set_after_contain_and_release(tmp_path: Path) -> None:
    """Counts equal the inventory's numbers: not x2 for evidence + isolate, not x3 after release."""
    _write(tmp_path, INVENTORY)
    data = _data(tmp_path)
    assert data.residents_by_state == EXPECTED
    assert data.total_affected == sum(EXPECTED.values())
    assert data.data_categories == ["financial_account", "ssn", "tax"]
    checklist = build_report(data).checklist
    assert checklist is not None
    ca_ag = [i for i in checklist.items if i.jurisdiction == "California" and "Attorney General" in i.party]
    assert ca_ag[0].status == "threshold not met"  # 200 CA residents, not 600


def test_inventory_edited_after_the_incident_leaves_report_unchanged(tmp_path: Path) -> None:
    """A later snapshot (say a second plan after someone edited the inventory) does not redefine a data set."""
    _write(tmp_path, INVENTORY)
    before = _data(tmp_path)
    edited = {name: _entry(name, ["health"], {"MA": 99999}, getattr(e, "dataset", None))
              for name, e in INVENTORY.items()}
    with AuditLog(tmp_path, actor="bob") as log:
        log.record("incident.scope", incident=INC, cause="plan", **snapshot_scope(edited.values()))
    after = _data(tmp_path)
    assert after.residents_by_state == before.residents_by_state == EXPECTED
    assert after.data_categories == before.data_categories


def test_counsel_facts_override_a_count_with_source(tmp_path: Path) -> None:
    """`incidents facts --residents MA=1300` wins over the snapshot and says who recorded it."""
    _write(tmp_path, INVENTORY)
    with AuditLog(tmp_path, actor="carol") as log:
        log.record("incident.facts", incident=INC, residents={"MA": 1300}, recorded_by="carol",
                   source="forensic report v2", confidence="high")
    data = _data(tmp_path)
    assert data.residents_by_state["MA"] == 1300
    assert "carol" in data.count_sources["MA"] and "high" in data.count_sources["MA"]


def test_inventory_counts_mapping_and_dataset(tmp_path: Path) -> None:
    """The inventory reader accepts `residents: {MA: 1225}` and `dataset:`; a bad count names file and line."""
    from agent.errors import ConfigError
    from agent.inventory import load_inventory

    path = tmp_path / "inventory.yaml"
    path.write_text("hosts:\n  crm-a:\n    address: 192.0.2.5\n    os: linux\n    data: [ssn]\n"
                    "    residents: {MA: 1225, NY: null}\n    dataset: crm\n")
    entry = load_inventory(path).hosts["crm-a"]
    assert entry.resident_counts == {"MA": 1225, "NY": None} and entry.dataset == "crm"
    assert snapshot_scope([entry])["systems"][0]["residents"] == {"MA": 1225, "NY": None}
    path.write_text("hosts:\n  crm-a:\n    address: 192.0.2.5\n    os: linux\n    residents: {MA: many}\n")
    with pytest.raises(ConfigError, match=r"inventory.yaml:5"):
        load_inventory(path)


def test_unknown_data_category_is_an_error_naming_file_line_and_vocabulary(tmp_path: Path) -> None:
    """`financial` (the old shipped example) is refused with file, line and the known values."""
    from agent.errors import ConfigError
    from agent.inventory import load_inventory

    path = tmp_path / "inventory.yaml"
    path.write_text("hosts:\n  pc7:\n    address: 192.0.2.37\n    os: windows\n    data: [ssn, financial]\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    text = str(info.value)
    assert "inventory.yaml:5" in text and "'financial'" in text and "financial_account" in text


def test_shipped_examples_use_known_categories() -> None:
    """config/inventory.yaml and the lab's generated inventory load under the closed vocabulary."""
    from agent.inventory import load_inventory
    from agent.lab.labconfig import DATA
    from agent.obligations import DATA_CATEGORIES

    repo = Path(__file__).resolve().parents[2]
    inv = load_inventory(repo / "agent" / "data" / "config" / "inventory.yaml")
    assert {c for h in inv.hosts.values() for c in h.data} <= set(DATA_CATEGORIES)
    assert {c for cats, _ in DATA.values() for c in cats} <= set(DATA_CATEGORIES)


def test_unknown_category_in_rules_table_is_refused(tmp_path: Path) -> None:
    """The rules table cannot name a category the inventory could never carry."""
    from agent.obligations import UnknownCategory, load_rules

    path = tmp_path / "rules.yaml"
    path.write_text("as_of: x\nregimes:\n  - {id: r1, title: t, jurisdiction: j, citation: c, data_any: [financial]}\n")
    with pytest.raises(UnknownCategory, match=r"rules.yaml:3: .*'financial'.*known: ssn"):
        load_rules(path)


def test_no_snapshot_falls_back_once_per_target_and_says_so() -> None:
    """Old logs without snapshots: inventory tags, each target once, with a visible note."""
    recs = [{"seq": 1, "ts": "2026-11-20T14:10:00Z", "event": "incident.opened", "incident": INC,
             "discovered_at": "2026-11-20T14:05:00Z"}]
    recs += [{"seq": 2 + i, "ts": "2026-11-20T14:11:00Z", "event": "action.done", "incident": INC,
              "action_id": f"a{i}", "target": "web", "action": a} for i, a in enumerate(("evidence", "isolate"))]
    data = from_records(recs, INC, {"web": {"data": ["ssn"], "residents": {"CA": 200}}})
    assert data.residents_by_state == {"CA": 200} and "no scope snapshot" in data.scope_note
    assert dt.datetime(2026, 11, 20, 14, 5, tzinfo=dt.UTC) == data.discovered_at


def test_check_config_reports_an_unknown_category_in_the_rules_table(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`agent check-config` loads the rules table too: an unknown category is a problem (exit 2), not "valid"."""
    from agent.cli import main

    (tmp_path / "inventory.yaml").write_text("hosts: {}\n")
    (tmp_path / "rules.yaml").write_text("as_of: x\nregimes:\n  - id: r1\n    data_any: [ssn, financial]\n")
    (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\nobligations: rules.yaml\nruns: x\n"
                                         .replace("runs: x\n", ""))
    assert main(["check-config", "--config", str(tmp_path / "agent.yaml")]) == 2
    out = capsys.readouterr().out
    assert "rules.yaml:4" in out and "'financial'" in out
