"""Decisions of a real daemon over fake targets: blast radius, approvals (API and CLI), expiry, TTL release,
drift re-verification, retries and restart persistence of scheduled jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from agent.cli import main as cli_main
from agent.store import Action, Approval, Transition
from tests.unit.daemon_env import API_TOKEN, TOKEN, configure, running
from tests.unit.fake_connector import Unreachable
from tests.unit.test_intake_webhook import audit_events, wait_for

API = {"Authorization": f"Bearer {API_TOKEN}"}
GEN = {"Authorization": f"Bearer {TOKEN}"}
EXTRA_HOSTS = "".join(f"  h{i:02d}: {{address: 10.9.0.{100 + i}, os: linux}}\n" for i in range(1, 11))


def storm_env(tmp: Path, daemon: str = "") -> tuple[Path, Any]:
    cfg, world = configure(tmp, daemon="  blast_radius: {hosts: 3, accounts: 1, window: 1h}\n" + daemon)
    inv = tmp / "inventory.yaml"
    inv.write_text(inv.read_text() + EXTRA_HOSTS)
    return cfg, world


def post(client: httpx.Client, host: str, rule: str = "edr-1") -> dict[str, Any]:
    res = client.post("/alerts/gen", json={"rule_id": rule, "host": host, "severity": 90}, headers=GEN)
    assert res.status_code == 202, res.text
    return res.json()


def actions(daemon: Any) -> list[Action]:
    with daemon.app.store.session() as s:
        return list(s.scalars(select(Action).order_by(Action.seq)))


class TestBlastRadius:
    def test_storm_is_limited_and_approval_runs_one(self, tmp_path: Path):
        """10 hosts with a limit of 3: 3 isolated, 7 wait; approving one runs it as the approver; deny runs nothing."""
        cfg, world = storm_env(tmp_path)
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            for i in range(1, 11):
                post(client, f"h{i:02d}")
            daemon.service.dispatcher.wait_idle(10)
            assert daemon.service.runner.wait_idle(10)
            assert sorted(t for t, on in world.isolated.items() if on) == ["h01", "h02", "h03"]
            pending = client.get("/approvals", headers=API).json()
            assert sorted(p["target"] for p in pending) == [f"h{i:02d}" for i in range(4, 11)]
            assert all("blast radius" in p["why"] for p in pending)
            h07 = next(p for p in pending if p["target"] == "h07")
            res = client.post(f"/approvals/{h07['id']}/approve", json={"reason": "confirmed by EDR"}, headers=API)
            assert res.status_code == 202 and res.json()["approval"]["decided_by"] == "alice"
            wait_for(lambda: world.isolated.get("h07"))
            assert daemon.service.runner.wait_idle(10)
            row = next(a for a in actions(daemon) if a.target == "h07")
            assert row.approved_by == "alice" and row.state == "done"
            h08 = next(p for p in pending if p["target"] == "h08")
            assert client.post(f"/approvals/{h08['id']}/deny", json={"reason": "false positive"},
                               headers=API).status_code == 200
            assert client.post(f"/approvals/{h08['id']}/approve", headers=API).status_code == 409
            assert client.post("/approvals/nope/approve", headers=API).status_code == 404
            assert not world.isolated.get("h08")
            events = [e["event"] for e in audit_events(tmp_path)]
            assert events.count("blast_radius.exceeded") == 7 and "approval.denied" in events
            assert len([a for a in actions(daemon) if a.kind == "apply"]) == 4

    def test_cli_approve_and_expiry(self, tmp_path: Path, capsys):
        """`agent approvals` lists, `agent approve` runs in-process as the technician; overdue ones expire."""
        cfg, world = storm_env(tmp_path, daemon="  approval_ttl: 2s\n  sweep_interval: 1s\n")
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            for i in range(1, 6):
                post(client, f"h{i:02d}")
            daemon.service.dispatcher.wait_idle(10)
            capsys.readouterr()
            assert cli_main(["approvals", "-c", str(cfg), "--json"]) == 0
            pending = json.loads(capsys.readouterr().out)["approvals"]
            assert sorted(p["target"] for p in pending) == ["h04", "h05"]
            h04 = next(p for p in pending if p["target"] == "h04")
            import agent.app as app_mod
            from agent.registry import Registry
            from tests.unit.daemon_env import FakeConnector
            orig = app_mod.App.registry
            try:  # the CLI process builds its own App: give it the fake connector too
                app_mod.App.registry = property(lambda self: Registry(extra={"ssh_linux": FakeConnector}))  # type: ignore[assignment]
                assert cli_main(["approve", h04["id"], "-c", str(cfg), "--reason", "ok", "--json"]) == 0
            finally:
                app_mod.App.registry = orig  # type: ignore[assignment]
            out = json.loads(capsys.readouterr().out)
            assert out["status"] == "done" and world.isolated.get("h04")
            assert cli_main(["deny", h04["id"], "-c", str(cfg)]) == 2  # already decided
            wait_for(lambda: client.get("/approvals?status=expired", headers=API).json(), timeout=10)
            with daemon.app.store.session() as s:
                statuses = {r.target: r.status for r in s.scalars(select(Approval))}
            assert statuses == {"h04": "approved", "h05": "expired"}
            assert "approval.expired" in [e["event"] for e in audit_events(tmp_path)]


class TestScheduler:
    def test_ttl_release(self, tmp_path: Path):
        """A rule TTL releases the containment at expiry, by the scheduler, restoring the snapshot."""
        cfg, world = configure(tmp_path, rules_extra=(
            "  - name: short\n    match: {source: gen, rule_id: ttl-*}\n    runbook: isolate-host\n"
            "    params: {capture_evidence: false}\n    ttl: 1s\n"))
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            ack = post(client, "web2", "ttl-1")
            wait_for(lambda: world.isolated.get("web2"))
            wait_for(lambda: world.isolated.get("web2") is False, timeout=10)
            inc = wait_for(lambda: (r := client.get(f"/incidents/{ack['incident']}", headers=API).json())
                           and r["status"] == "released" and r)
            assert [a["kind"] for a in inc["actions"]] == ["apply", "undo"]
            assert world.rules["web2"] == "baseline"
            assert post(client, "web2", "ttl-1")["disposition"] == "accepted"  # released: no longer deduped

    def test_ttl_job_survives_restart(self, tmp_path: Path):
        """A TTL job due while the daemon is stopped runs once when the next daemon starts."""
        cfg, world = configure(tmp_path, rules_extra=(
            "  - name: short\n    match: {source: gen, rule_id: ttl-*}\n    runbook: isolate-host\n"
            "    params: {capture_evidence: false}\n    ttl: 2s\n"))
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            post(client, "web3", "ttl-1")
            wait_for(lambda: world.isolated.get("web3"))
            wait_for(lambda: "ttl:" in " ".join(daemon.scheduler.job_ids()))
        import time
        time.sleep(2.5)
        assert world.isolated["web3"] is True
        with running(cfg) as daemon:
            wait_for(lambda: world.isolated["web3"] is False)
            assert daemon.service.runner.wait_idle(5)
            assert [a.kind for a in actions(daemon)] == ["apply", "undo"]

    def test_drift_reapplied(self, tmp_path: Path):
        """Isolation removed behind the agent's back is detected and applied again — in place, from the action's
        journaled snapshot (a new snapshot of a half-changed target would make the undo restore the wrong thing;
        tests/integration/engine/test_crash_matrix_ad.py shows it on a real DC): one action, still active."""
        cfg, world = configure(tmp_path, daemon="  reverify_interval: 1s\n")
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            post(client, "web1")
            wait_for(lambda: [a.state for a in actions(daemon)] == ["done"])
            snapshot = actions(daemon)[0].snapshot
            world.isolated["web1"] = False  # someone flushed the firewall
            wait_for(lambda: "containment.reapplied" in [e["event"] for e in audit_events(tmp_path)], timeout=10)
            (row,) = actions(daemon)
            assert row.state == "done" and row.undone_at is None and row.changed == 1 and world.isolated["web1"]
            assert row.snapshot == snapshot
            with daemon.app.store.session() as s:
                details = [t.detail for t in s.scalars(select(Transition).where(Transition.action_id == row.id))]
            assert any("re-applied after drift" in d and "journaled snapshot" in d for d in details), details
            assert "containment.drift" in [e["event"] for e in audit_events(tmp_path)]

    def test_drift_alert_only(self, tmp_path: Path):
        """With drift_policy alert, drift is audited and counted but nothing is re-applied."""
        cfg, world = configure(tmp_path, daemon="  reverify_interval: 1s\n  drift_policy: alert\n")
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            post(client, "web1")
            wait_for(lambda: [a.state for a in actions(daemon)] == ["done"])
            world.isolated["web1"] = False
            wait_for(lambda: "containment.drift" in [e["event"] for e in audit_events(tmp_path)])
            assert len(actions(daemon)) == 1 and world.isolated["web1"] is False
            assert 'agent_containment_drift_total{policy="alert"}' in client.get("/metrics").text

    def test_transient_failure_retried(self, tmp_path: Path):
        """An unreachable target fails the run; the retry job applies it once it answers again."""
        cfg, world = configure(tmp_path, daemon="  retry_interval: 1s\n")
        world.fail_open["web3"] = [Unreachable]
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            post(client, "web3")
            wait_for(lambda: world.isolated.get("web3"), timeout=10)
            wait_for(lambda: [a.state for a in actions(daemon)] == ["failed", "done"])
            assert actions(daemon)[0].error_kind == "unreachable"
