"""The web console in a real browser (Debian's Chromium driven by Playwright): sign in, see an approval arrive
for an alert, approve it, watch the host become isolated and the timeline and audit record name the operator;
a viewer cannot approve; four-eyes stops a requester; a POST without the CSRF token is refused; every page fits
1280×800 and 390×844 without horizontal scrolling. Targets are the fake connector's world (the daemon, the
console, database and audit log are real)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from agent.approvals import ApprovalRequest, request_approval
from agent.console.app import COOKIE, create_console
from agent.console.auth import Operators
from agent.console.settings import console_settings
from tests.doubles.notify.smtp import free_port
from tests.unit.daemon_env import TOKEN, configure, fake_app, running, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
SHOTS = Path(os.environ.get("CONSOLE_SHOTS", "")) if os.environ.get("CONSOLE_SHOTS") else None
GEN = {"Authorization": f"Bearer {TOKEN}"}
PASSWORDS = {"alice": "alice-approves-1234", "bob": "bob-only-looks-5678", "carol": "carol-requests-9012"}


class Console:
    """`agent console` in a thread of this process (so approved plans act on the fake world)."""

    def __init__(self, cfg: Path) -> None:
        self.app = fake_app(cfg)
        ops = Operators(self.app.store, self.app.audit)
        for name, role in (("alice", "approver"), ("bob", "viewer"), ("carol", "approver")):
            ops.add(name, role, PASSWORDS[name], by="test-admin")
        self.port = free_port()
        web = create_console(self.app, console_settings({}, f"127.0.0.1:{self.port}"), secure_cookie=False)
        self.server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Console:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.app.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps"])
        try:
            yield b
        finally:
            b.close()


def login(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/")
    assert "/login" in page.url
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def fits(page: Any, name: str) -> None:
    """No horizontal scrolling at this viewport; a screenshot to look at when CONSOLE_SHOTS is set."""
    width = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert width <= inner, f"{name}: document {width}px wider than the viewport {inner}px"
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def audit_records(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((tmp / "var" / "audit").glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


class TestConsoleInABrowser:
    def test_approve_in_the_browser(self, tmp_path: Path, browser: Any):
        cfg, world = configure(tmp_path, daemon="  blast_radius: {hosts: 1, accounts: 1, window: 1h}\n")
        with running(cfg) as daemon, Console(cfg) as console, httpx.Client(base_url=daemon.url) as client:
            for host in ("web1", "web2"):
                assert client.post("/alerts/gen", json={"rule_id": "edr-1", "host": host, "severity": 90},
                                   headers=GEN).status_code == 202
            wait_for(lambda: world.isolated.get("web1"))
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            login(page, console.url, "alice")
            assert "1 approval waiting" in page.inner_text("body")
            assert "web1" in page.inner_text("table")  # contained now
            fits(page, "home-1280")
            page.click("text=Decide")
            fits(page, "approvals-1280")
            page.click("table a")
            body = page.inner_text("main")
            assert "isolate-host on web2" in body and "Exactly what will run" in body
            assert "isolate on web2 (10.9.0.22)" in body
            fits(page, "approval-1280")
            page.fill("input[name=reason]", "EDR confirms beacon on web2")
            page.click("button[value=approve]")
            page.wait_for_url(f"{console.url}/incidents/*")
            wait_for(lambda: world.isolated.get("web2"), timeout=20)
            page.reload()
            text = page.inner_text("main")
            assert "alice" in text and "done" in text
            fits(page, "incident-1280")
            mobile = browser.new_page(viewport={"width": 390, "height": 844})
            login(mobile, console.url, "alice")
            for path, name in (("/", "home-390"), ("/approvals", "approvals-390"), (page.url[len(console.url):],
                                                                                    "incident-390")):
                mobile.goto(console.url + path)
                fits(mobile, name)
        records = audit_records(tmp_path)
        approved = [r for r in records if r["event"] == "approval.approved"]
        assert approved and approved[0]["decided_by"] == "alice"
        assert approved[0]["reason"] == "EDR confirms beacon on web2"
        assert any(r["event"] == "console.login" and r["operator"] == "alice" for r in records)
        done = [r for r in records if r["event"] == "action.done" and r.get("target") == "web2"]
        assert done
        assert all(PASSWORDS["alice"] not in json.dumps(r) for r in records)

    def test_viewer_cannot_approve_and_csrf_and_four_eyes(self, tmp_path: Path, browser: Any):
        cfg, world = configure(tmp_path)
        with Console(cfg) as console:
            app = console.app
            app.journal_incident = None
            from agent.journal import Journal
            Journal(app.store, app.audit).open_incident("INC-T-1", title="t", reason="r", requested_by="carol",
                                                        trigger="cli")
            row = request_approval(app.store, app.audit, ApprovalRequest(
                incident="INC-T-1", runbook="isolate-host", target="web1", params={"capture_evidence": False},
                why="runbook requires approval"), expires_in=__import__("datetime").timedelta(hours=1),
                requested_by="carol")
            # a viewer sees the plan but gets no buttons, and a forged POST is refused
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            login(page, console.url, "bob")
            page.goto(f"{console.url}/approvals/{row.id}")
            assert "may view but not decide" in page.inner_text("main")
            assert page.locator("button[value=approve]").count() == 0
            cookie = next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE)
            with httpx.Client(base_url=console.url, cookies={COOKIE: cookie}) as bob:
                csrf = bob.get(f"/approvals/{row.id}").text.split('name="csrf" value="')[1].split('"')[0]
                res = bob.post(f"/approvals/{row.id}/approve", data={"csrf": csrf})
                assert res.status_code == 403 and "may not decide" in res.text
            # the requester herself: four-eyes
            carol = browser.new_page()
            login(carol, console.url, "carol")
            carol.goto(f"{console.url}/approvals/{row.id}")
            assert "Four-eyes rule" in carol.inner_text("main")
            cookie = next(c["value"] for c in carol.context.cookies() if c["name"] == COOKIE)
            with httpx.Client(base_url=console.url, cookies={COOKIE: cookie}) as c:
                csrf = c.get("/").text.split('name="csrf" value="')[1].split('"')[0]
                assert c.post(f"/approvals/{row.id}/approve", data={"csrf": csrf}).status_code == 403
            # alice without the CSRF token (or from another origin): refused; nothing ran
            alice = browser.new_page()
            login(alice, console.url, "alice")
            cookie = next(c["value"] for c in alice.context.cookies() if c["name"] == COOKIE)
            with httpx.Client(base_url=console.url, cookies={COOKIE: cookie}) as a:
                assert a.post(f"/approvals/{row.id}/approve", data={}).status_code == 403
                csrf = a.get("/").text.split('name="csrf" value="')[1].split('"')[0]
                res = a.post(f"/approvals/{row.id}/approve", data={"csrf": csrf},
                             headers={"Origin": "https://evil.example"})
                assert res.status_code == 403
            time.sleep(0.2)
            assert not world.isolated.get("web1")
            from agent.approvals import get_approval
            assert get_approval(app.store, row.id).status == "pending"
        events = [r["event"] for r in audit_records(tmp_path)]
        assert "console.csrf_refused" in events and "console.refused" in events

    def test_wrong_password_and_unknown_operator_look_the_same(self, tmp_path: Path, browser: Any):
        cfg, _world = configure(tmp_path)
        with Console(cfg) as console:
            page = browser.new_page()
            for name, password in (("alice", "wrong-password-000"), ("nobody", "wrong-password-000")):
                page.goto(f"{console.url}/login")
                page.fill("#name", name)
                page.fill("#password", password)
                page.click("button[type=submit]")
                assert "Name or password not accepted" in page.inner_text("main")
            page.goto(f"{console.url}/login?next=//evil.example/")
            page.fill("#name", "alice")
            page.fill("#password", PASSWORDS["alice"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{console.url}/")  # never redirected off-site


class TestOperatorsCommand:
    def test_add_list_disable(self, tmp_path: Path):
        """`agent operators add` takes the password from a pipe (never argv), refuses short ones and unknown
        roles, lists without hashes, and disable ends the operator's sessions."""
        import subprocess
        import sys
        cfg, _world = configure(tmp_path)

        def agent(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "agent.cli", *args, "-c", str(cfg)], input=stdin,
                                  capture_output=True, text=True, timeout=60, check=False,
                                  env={**os.environ, "AGENT_NO_WARM": "1", "NO_COLOR": "1"})

        assert agent("operators", "add", "dana", "--role", "approver", stdin="short\n").returncode == 2
        res = agent("operators", "add", "dana", "--role", "root", stdin="long-enough-password\n")
        assert res.returncode == 2
        res = agent("operators", "add", "dana", "--role", "approver", stdin="long-enough-password\n")
        assert res.returncode == 0, res.stderr
        listed = json.loads(agent("operators", "list", "--json").stdout)
        assert listed == [{"name": "dana", "role": "approver", "state": "active", "created": listed[0]["created"]}]
        assert agent("operators", "disable", "dana").returncode == 0
        assert json.loads(agent("operators", "list", "--json").stdout)[0]["state"] == "disabled"
        audit = json.dumps(audit_records(tmp_path))
        assert "long-enough-password" not in audit and "operator.added" in audit
