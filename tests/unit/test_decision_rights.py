"""One rule for who may decide an approval, whether through the API, the CLI or the console: an operator's role
decides; a disabled operator is refused; with four-eyes nobody decides what they requested; an API token without
an operator keeps working with an audited deprecation note."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import httpx

from agent.approvals import ApprovalRequest, get_approval, request_approval
from agent.cli import main as cli_main
from agent.console.auth import Operators
from agent.journal import Journal
from tests.unit.daemon_env import API_TOKEN, configure, running

API = {"Authorization": f"Bearer {API_TOKEN}"}  # the token named "alice" in daemon.api_tokens


def _approval(app, requested_by: str, incident: str = "INC-R-1", target: str = "web1") -> str:
    Journal(app.store, app.audit).open_incident(incident, title="t", reason="r", requested_by=requested_by,
                                                trigger="cli")
    row = request_approval(app.store, app.audit, ApprovalRequest(
        incident=incident, runbook="isolate-host", target=target, params={"capture_evidence": False},
        why="runbook requires approval"), expires_in=datetime.timedelta(hours=1), requested_by=requested_by)
    return row.id


def _events(tmp: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((tmp / "var" / "audit").glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


class TestApiRights:
    def test_legacy_token_works_with_a_deprecation_note(self, tmp_path: Path):
        cfg, _world = configure(tmp_path)
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            aid = _approval(daemon.app, "carol")
            res = client.post(f"/approvals/{aid}/approve", json={"reason": "ok"}, headers=API)
            assert res.status_code == 202, res.text
        notes = [e for e in _events(tmp_path) if e["event"] == "approval.legacy_identity"]
        assert notes and notes[0]["by"] == "alice" and "agent operators add alice" in notes[0]["note"]

    def test_viewer_operator_token_refused(self, tmp_path: Path):
        """The token's name is an operator with the viewer role: 403, nothing decided, audited."""
        cfg, _world = configure(tmp_path)
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            Operators(daemon.app.store, daemon.app.audit).add("alice", "viewer", "alice-password-123",
                                                              by="test")
            aid = _approval(daemon.app, "carol")
            res = client.post(f"/approvals/{aid}/approve", json={"reason": "ok"}, headers=API)
            assert res.status_code == 403 and "viewer" in res.json()["detail"]
            assert get_approval(daemon.app.store, aid).status == "pending"
        assert any(e["event"] == "approval.decision_refused" and e["channel"] == "api" for e in _events(tmp_path))

    def test_four_eyes_over_the_api(self, tmp_path: Path):
        cfg, world = configure(tmp_path)
        with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
            Operators(daemon.app.store, daemon.app.audit).add("alice", "approver", "alice-password-123",
                                                              by="test")
            aid = _approval(daemon.app, "alice")
            res = client.post(f"/approvals/{aid}/deny", json={"reason": "mine"}, headers=API)
            assert res.status_code == 403 and "four-eyes" in res.json()["detail"]
            assert not world.isolated.get("web1")


class TestCliRights:
    def test_four_eyes_on_the_cli(self, tmp_path: Path, capsys):
        """The technician who requested an approval cannot approve it from the CLI either (exit 3).

        The target is the protected dc1: even if the rule failed, planning would refuse before any connection
        (the stderr then would not mention four-eyes), so this test can never reach a network.
        """
        from agent.app import App
        cfg, _world = configure(tmp_path)
        app = App(config_path=cfg)  # the CLI's own identity (the OS user), as `agent approve` will see it
        try:
            aid = _approval(app, app.actor, target="dc1")
        finally:
            app.close()
        code = cli_main(["approve", aid, "-c", str(cfg), "--reason", "mine"])
        err = capsys.readouterr().err
        assert code == 3 and "four-eyes" in err, err
