"""A TTL release that finds its action being changed at its site right now — a drift re-apply under the action's
gate (agent/workers/gate.py), ``applying`` — is tried again after ``retry_interval`` (``ttl.deferred``), not
dropped as "no longer active". The daemon's drift check no longer holds the target's lock while a site
re-applies, so its own TTL release can now meet the action mid-way (before, it waited on the lock)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from agent import scheduler
from agent.store import Action, utcnow
from tests.unit.daemon_env import TOKEN, configure, running, wait_for
from tests.unit.test_intake_webhook import audit_events

TTL_RULE = ("  - name: short\n    match: {source: gen, rule_id: ttl-*}\n    runbook: isolate-host\n"
            "    params: {capture_evidence: false}\n    ttl: 1h\n")


def test_a_ttl_release_meeting_a_reapply_mid_way_is_deferred_not_dropped(tmp_path: Path):
    cfg, world = configure(tmp_path, daemon="  retry_interval: 20s\n", rules_extra=TTL_RULE)
    with running(cfg) as daemon:
        res = httpx.post(daemon.url + "/alerts/gen", json={"rule_id": "ttl-1", "host": "web2", "severity": 90},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert res.status_code == 202, res.text
        store = daemon.service.store

        def rows() -> list[Action]:
            with store.session() as s:
                return list(s.scalars(select(Action).where(Action.target == "web2").order_by(Action.seq)))
        [row] = wait_for(lambda: [r for r in rows() if r.state == "done"])
        with store.session() as s:  # a worker of the site re-applies it right now (agent/workers/reader.py)
            db = s.get(Action, row.id)
            assert db is not None
            db.state, db.site, db.owner = "applying", "boston", "wk1:4711"
            db.lease_until = utcnow() + timedelta(seconds=30)
        scheduler._bind(daemon.service)  # as on the daemon's scheduler thread
        scheduler.release_action(row.id)
        events = [e["event"] for e in audit_events(tmp_path)]
        assert "ttl.deferred" in events and "ttl.skipped" not in events, events
        job = daemon.service.scheduler.sched.get_job(f"ttl:{row.id}")
        assert job is not None and job.next_run_time < utcnow() + timedelta(seconds=25)  # not the 1 h left
        assert [r.kind for r in rows()] == ["apply"] and world.isolated["web2"] is True
