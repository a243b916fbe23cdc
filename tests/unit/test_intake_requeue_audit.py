"""A decision re-made after a crash writes its audit records once.

Found: ~6% of incidents got duplicate audit records after a crash — dry-run, refused and empty decisions are
written to the store in batches *after* their audit records, so a daemon killed in between decided them again
on restart and recorded ``incident.opened`` and the plan a second time (the counsel report counted them twice).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.unit.daemon_env import TOKEN, configure, running

GEN = {"Authorization": f"Bearer {TOKEN}"}
REHEARSE = """\
  - name: rehearse
    match: {source: gen, rule_id: "rehearse-*"}
    runbook: isolate-host
    params: {capture_evidence: false}
    policy: dry-run
"""


def _events(tmp: Path, incident: str) -> list[str]:
    return [json.loads(line)["event"] for p in sorted((tmp / "var" / "audit").glob("*.jsonl"))
            for line in p.read_text().splitlines() if incident in line]


def test_requeued_decision_is_not_audited_twice(tmp_path: Path) -> None:
    cfg, _ = configure(tmp_path, rules_extra=REHEARSE)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        ack = client.post("/alerts/gen", json={"rule_id": "rehearse-1", "host": "web1"}, headers=GEN).json()
        daemon.service.dispatcher.wait_idle(5)
        # as if the daemon had died after the audit records and before the batched decision write
        with daemon.app.store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alerts SET disposition = 'accepted' WHERE id = ?", (ack["alert_id"],))
            conn.exec_driver_sql("UPDATE intake_incidents SET decision = 'queued' WHERE incident_id = ?",
                                 (ack["incident"],))
    before = _events(tmp_path, ack["incident"])
    assert before.count("incident.opened") == 1 and before.count("plan.dry_run") == 1
    with running(cfg) as daemon:  # the restart decides it again
        daemon.service.dispatcher.wait_idle(5)
    after = _events(tmp_path, ack["incident"])
    assert after.count("incident.opened") == 1 and after.count("plan.dry_run") == 1, after
