"""The console on the practice lab: a Wazuh alert under an `approve` rule waits for a person; an approver signs
in to the console in a real browser (Debian's Chromium), approves, and the real victim host becomes isolated —
proven by the probe matrix — with the operator named in the timeline and the audit log.

Everything acts from the lab's management host: the daemon, the console and the browser run inside
``lab.enter("mgmt")`` (processes started there inherit the namespace), so the browser reaches the console on the
management host's own loopback and nothing leaves the lab.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import uvicorn

from agent.app import App
from agent.console.app import create_console
from agent.console.auth import Operators
from agent.console.settings import console_settings
from agent.daemon import Daemon
from agent.lab import Lab
from tests.doubles.notify.smtp import free_port
from tests.integration.daemon.test_daemon_lab import isolated, journal, post, wait_for, write_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")]
PASSWORD = "alice-approves-on-the-lab-1"


def test_approve_in_the_console_isolates_the_victim(clean_lab: Lab, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    lab = clean_lab
    cfg = write_config(lab, tmp_path)
    rules = (tmp_path / "rules.yaml").read_text()
    (tmp_path / "rules.yaml").write_text(rules.replace("    runbook: isolate-host\n",
                                                       "    runbook: isolate-host\n    policy: approve\n", 1))
    daemon_app = App(config_path=cfg, actor="agent-daemon@test")
    console_app = App(config_path=cfg, actor="agent-console@test")
    Operators(console_app.store, console_app.audit).add("alice", "approver", PASSWORD, by="test-admin")
    port = free_port()
    with lab.enter("mgmt"):
        daemon = Daemon(daemon_app).start_in_thread()
        web = create_console(console_app, console_settings({}, f"127.0.0.1:{port}"), secure_cookie=False)
        server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started)
            post(lab, daemon.url, "victim")
            wait_for(lambda: daemon.service.dispatcher.wait_idle(5))
            assert lab.probe().state("attacker", "victim", 8080) == "open"  # waiting: untouched
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                base = f"http://127.0.0.1:{port}"
                page.goto(f"{base}/approvals")
                page.fill("#name", "alice")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/approvals")
                page.click("table a")
                assert "isolate on victim (10.77.0.20)" in page.inner_text("main")
                page.fill("input[name=reason]", "confirmed on the lab")
                page.click("button[value=approve]")
                page.wait_for_url(f"{base}/incidents/*")
                wait_for(lambda: [a for a in journal(cfg) if a.target == "victim" and a.state == "done"],
                         timeout=60)
                page.reload()
                text = page.inner_text("main")
                browser.close()
            assert isolated(lab, "victim")
            assert "alice" in text and "verifying → done" in text
        finally:
            server.should_exit = True
            thread.join(10)
            daemon.stop()
    row = next(a for a in journal(cfg) if a.target == "victim")
    assert row.approved_by == "alice"
    records = [json.loads(line) for f in sorted((tmp_path / "audit").glob("*.jsonl"))
               for line in f.read_text().splitlines() if line.strip()]
    assert any(r["event"] == "approval.approved" and r["decided_by"] == "alice" for r in records)
    daemon_app.close()
    console_app.close()
