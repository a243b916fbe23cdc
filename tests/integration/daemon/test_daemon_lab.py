"""`agent daemon` end to end against the practice lab: real sshd hosts, real nftables/iptables, real HTTP.

The daemon runs from the lab's management host: in-process (started inside ``lab.enter("mgmt")`` so every
thread it creates acts from there) or as a whole ``ip netns exec <prefix>-mgmt agent daemon`` process for the
crash test. Effects are proven with the probe matrix, decisions with the journal and the approvals table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent.app import App
from agent.daemon import Daemon
from agent.intake.auth import signed_headers
from agent.lab import Lab
from agent.store import Action, Approval, Store
from tests.unit.daemon_env import wait_for as _wait_for

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[3]
AGENT = str(REPO / ".venv" / "bin" / "agent")
SECRET = "lab-wazuh-secret-42"
API_TOKEN = "lab-api-token-alice"
GHOSTS = [f"ghost{i:02d}" for i in range(1, 18)]  # LAN addresses where nothing answers


def write_config(lab: Lab, tmp: Path, *, daemon: str = "", rule: str = "") -> Path:
    """agent.yaml + inventory (lab hosts and ghosts) + rules.yaml, with a private journal and audit log."""
    inv = (lab.config_dir / "inventory.yaml").read_text()
    key = f"file:{lab.state_dir / 'agent_key'}"
    ghosts = "".join(f'  {g}:\n    address: "10.77.0.{100 + i}"\n    os: "linux"\n    credentials:\n'
                     f'      username: "root"\n      private_key: "{key}"\n' for i, g in enumerate(GHOSTS, 1))
    assert "\nhosts:\n" in inv
    inv = inv.replace("\nhosts:\n", "\nhosts:\n" + ghosts, 1)
    (tmp / "inventory.yaml").write_text(inv)
    (tmp / "rules.yaml").write_text(
        "rules:\n"
        "  - name: wazuh-lab\n"
        "    match: {source: wazuh, rule_id: ['5712'], min_severity: 60}\n"
        "    runbook: isolate-host\n"
        "    params: {capture_evidence: false}\n" + rule)
    (tmp / "agent.yaml").write_text(
        f'inventory: "{tmp / "inventory.yaml"}"\nrunbooks: "{REPO / "agent" / "data" / "runbooks"}"\n'
        f'database: "{tmp / "agent.db"}"\naudit_dir: "{tmp / "audit"}"\nevidence_dir: "{tmp / "evidence"}"\n'
        f'rules: "{tmp / "rules.yaml"}"\n'
        f'ssh: {{known_hosts: "{lab.state_dir / "known_hosts"}", connect_timeout: 1, command_timeout: 30}}\n'
        "engine: {max_parallel: 8, retries: 1, backoff: 0.1, confirm_timeout: 300}\n"
        "daemon:\n  listen: 127.0.0.1:0\n  retry_attempts: 0\n  shutdown_grace: 10s\n"
        "  sources:\n    wazuh: {format: wazuh, hmac_secret: env:LAB_WAZUH_HMAC}\n"
        "  api_tokens: {alice: env:LAB_API_ALICE}\n" + daemon)
    os.environ["LAB_WAZUH_HMAC"] = SECRET
    os.environ["LAB_API_ALICE"] = API_TOKEN
    return tmp / "agent.yaml"


def wazuh(host: str) -> bytes:
    return json.dumps({
        "timestamp": "2026-11-23T03:12:44.118+0000",
        "rule": {"level": 10, "description": "sshd: authentication success after brute force", "id": "5712",
                 "groups": ["syslog", "sshd", "authentication_success"]},
        "agent": {"id": "003", "name": host}, "manager": {"name": "wazuh-manager"},
        "data": {"srcip": "10.77.1.130", "dstuser": "jdoe"}, "location": "/var/log/auth.log"}).encode()


def post(lab: Lab, url: str, host: str) -> dict[str, Any]:
    body = wazuh(host)
    headers = signed_headers(SECRET.encode(), body, nonce=uuid.uuid4().hex)  # replay-protected HMAC (issue 16)
    with lab.enter("mgmt"), httpx.Client(base_url=url, timeout=10) as client:
        res = client.post("/alerts/wazuh", content=body, headers=headers)
    assert res.status_code == 202, res.text
    return res.json()


def api(lab: Lab, url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    with lab.enter("mgmt"), httpx.Client(base_url=url, timeout=10) as client:
        return client.request(method, path, headers={"Authorization": f"Bearer {API_TOKEN}"}, **kw)


def wait_for(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    return _wait_for(cond, timeout, interval=0.05)


def open_ports(lab: Lab, host: str) -> list[str]:
    return sorted(k for k, v in lab.probe().as_dict().items() if host in k and v == "open")


def isolated(lab: Lab, host: str) -> bool:
    """Every probed flow to or from ``host`` is blocked, except the management SSH path, which is open."""
    rows = lab.probe().as_dict()
    touching = {k: v for k, v in rows.items()
                if k.startswith(f"{host}->") or k.split("->")[1].split(":")[0] == host}
    mgmt = lab.probe([("mgmt", host, 22)]).state("mgmt", host, 22)
    return bool(touching) and mgmt == "open" and all(
        v != "open" for k, v in touching.items() if k != f"mgmt->{host}:22")


def journal(cfg: Path) -> list[Action]:
    store = Store(f"sqlite:///{cfg.parent / 'agent.db'}")
    try:
        with store.session() as s:
            return list(s.scalars(select(Action).order_by(Action.seq)))
    finally:
        store.close()


@pytest.fixture
def in_process(clean_lab: Lab, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start an in-process daemon from the mgmt host with a given daemon/rule configuration."""
    started: list[tuple[Daemon, App]] = []

    def start(daemon: str = "", rule: str = "") -> Daemon:
        cfg = write_config(clean_lab, tmp_path, daemon=daemon, rule=rule)
        app = App(config_path=cfg, actor="agent-daemon@test")
        with clean_lab.enter("mgmt"):
            d = Daemon(app).start_in_thread()
        started.append((d, app))
        return d
    yield start
    for d, app in started:
        d.stop()
        app.close()


class TestAlertToContainment:
    def test_wazuh_alert_isolates_victim_and_dedupes(self, clean_lab: Lab, in_process):
        """A Wazuh alert naming victim isolates it (probe matrix); the same alert again is deduped, nothing
        re-applied."""
        lab = clean_lab
        d = in_process()
        ack = post(lab, d.url, "victim")
        assert ack["disposition"] == "accepted"
        inc = wait_for(lambda: (r := api(lab, d.url, "GET", f"/incidents/{ack['incident']}").json())
                       and r["status"] == "contained" and r)
        assert [(a["target"], a["action"], a["state"]) for a in inc["actions"]] == [("victim", "isolate", "done")]
        assert isolated(lab, "victim")
        assert lab.probe().state("mgmt", "peer", 8080) == "open"
        again = post(lab, d.url, "victim")
        assert (again["disposition"], again["incident"]) == ("deduped", ack["incident"])
        d.service.dispatcher.wait_idle(5)
        assert d.service.runner.wait_idle(10)
        assert len(journal(d.app.settings.path)) == 1

    def test_storm_limited_then_approval_runs(self, clean_lab: Lab, in_process):
        """20 hosts named with a limit of 5: 5 executed, 15 wait for approval; approving legacy isolates it."""
        lab = clean_lab
        d = in_process(daemon="  blast_radius: {hosts: 5, accounts: 5, window: 1h}\n")
        order = ["victim", "peer", *GHOSTS[:3], "legacy", *GHOSTS[3:]]
        for host in order:
            post(lab, d.url, host)
        d.service.dispatcher.wait_idle(20)
        assert d.service.runner.wait_idle(30)
        executed = sorted({a.target for a in journal(d.app.settings.path) if a.action == "isolate"})
        assert executed == sorted(["victim", "peer", *GHOSTS[:3]])
        pending = api(lab, d.url, "GET", "/approvals").json()
        assert sorted(p["target"] for p in pending) == sorted(["legacy", *GHOSTS[3:]])
        states = {a.target: (a.state, a.error) for a in journal(d.app.settings.path)}
        assert isolated(lab, "victim") and isolated(lab, "peer"), (open_ports(lab, "peer"), states)
        assert lab.probe().state("attacker", "legacy", 8080) == "open"  # waiting: untouched
        legacy = next(p for p in pending if p["target"] == "legacy")
        res = api(lab, d.url, "POST", f"/approvals/{legacy['id']}/approve", json={"reason": "confirmed"})
        assert res.status_code == 202, res.text
        wait_for(lambda: [a for a in journal(d.app.settings.path) if a.target == "legacy" and a.state == "done"])
        assert isolated(lab, "legacy")
        row = next(a for a in journal(d.app.settings.path) if a.target == "legacy")
        assert row.approved_by == "alice"


class TestScheduler:
    def test_ttl_release(self, clean_lab: Lab, in_process):
        """A rule TTL of a few seconds: the scheduler releases victim and the probe matrix is back to baseline."""
        lab = clean_lab
        baseline = lab.probe().as_dict()
        d = in_process(rule="    ttl: 3s\n")
        post(lab, d.url, "victim")
        wait_for(lambda: any(a.state == "done" for a in journal(d.app.settings.path)))
        assert isolated(lab, "victim")
        wait_for(lambda: [a.kind for a in journal(d.app.settings.path) if a.state == "done"] == ["apply", "undo"])
        assert lab.probe().as_dict() == baseline

    def test_drift_reapplied(self, clean_lab: Lab, in_process):
        """The isolation table deleted behind the agent's back is noticed and applied again — the same action,
        in place, from its journaled snapshot (agent.lifecycle.ActionRunner.reapply)."""
        lab = clean_lab
        d = in_process(daemon="  reverify_interval: 1s\n")
        post(lab, d.url, "victim")
        wait_for(lambda: [a.state for a in journal(d.app.settings.path)] == ["done"])
        lab.exec("victim", ["nft", "delete", "table", "inet", "containment_agent"])
        assert lab.probe().state("attacker", "victim", 8080) == "open"
        wait_for(lambda: isolated(lab, "victim"), timeout=30)
        wait_for(lambda: [a.state for a in journal(d.app.settings.path)] == ["done"])
        (row,) = journal(d.app.settings.path)
        assert row.undone_at is None and row.changed == 1


class TestCrash:
    def test_sigkill_with_pending_ttl_then_restart_releases(self, clean_lab: Lab, tmp_path: Path):
        """A daemon killed with a pending TTL job: the restarted daemon releases exactly once; SIGTERM exits 0."""
        lab = clean_lab
        baseline = lab.probe().as_dict()
        cfg = write_config(lab, tmp_path, rule="    ttl: 6s\n",
                           daemon="  reverify_interval: 1h\n")
        cfg.write_text(cfg.read_text().replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:18787"))
        env = {**os.environ, "NO_COLOR": "1"}
        argv = ["ip", "netns", "exec", f"{lab.prefix}-mgmt", AGENT, "daemon", "-c", str(cfg)]

        def spawn() -> subprocess.Popen[str]:
            with open(tmp_path / "daemon.log", "a") as log:
                proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

            def up() -> bool:
                try:
                    return api(lab, "http://127.0.0.1:18787", "GET", "/healthz").status_code == 200
                except httpx.HTTPError:
                    assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
                    return False
            wait_for(up)
            return proc
        first = spawn()
        try:
            post(lab, "http://127.0.0.1:18787", "victim")
            wait_for(lambda: [a.state for a in journal(cfg)] == ["done"])
            expires = journal(cfg)[0].expires_at
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert isolated(lab, "victim")
        assert expires is not None
        time.sleep(max(0.0, (expires - journal(cfg)[0].created_at).total_seconds()))  # due while down
        assert isolated(lab, "victim")
        second = spawn()
        try:
            wait_for(lambda: [a.kind for a in journal(cfg) if a.state == "done"] == ["apply", "undo"])
            assert lab.probe().as_dict() == baseline
            time.sleep(1)
            assert [a.kind for a in journal(cfg)] == ["apply", "undo"]  # released once, not twice
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        audit = "".join(p.read_text() for p in sorted((tmp_path / "audit").glob("*.jsonl")))
        assert '"daemon.stopped"' in audit
        store = Store(f"sqlite:///{tmp_path / 'agent.db'}")
        try:
            with store.session() as s:
                assert list(s.scalars(select(Approval))) == []
        finally:
            store.close()
