"""A real daemon (fake targets) with notifications configured: an alert beyond the blast radius becomes an
approval, and the approver's mailbox on a real SMTP server (STARTTLS + AUTH) receives the exact plan with a
link to the console; each delivery is in the audit log without the password."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.doubles.notify.chat import ChatReceiver
from tests.doubles.notify.smtp import PASSWORD, USER, SmtpServer
from tests.unit.daemon_env import TOKEN, configure, running, wait_for

GEN = {"Authorization": f"Bearer {TOKEN}"}


def _audit_text(tmp: Path) -> str:
    return "".join(p.read_text() for p in sorted((tmp / "var" / "audit").glob("*.jsonl")))


class TestApprovalNotice:
    def test_approval_mail_and_teams_card(self, tmp_path: Path, monkeypatch):
        monkeypatch.setenv("TEST_SMTP_PASS", PASSWORD)
        with SmtpServer(tmp_path) as smtp, ChatReceiver() as chat:
            monkeypatch.setenv("TEST_TEAMS_URL", chat.url("teams"))
            notifications = (
                "notifications:\n"
                "  console_url: https://ir-console.example:8443\n"
                "  channels:\n"
                "    soc-mail:\n"
                "      kind: smtp\n      host: 127.0.0.1\n"
                f"      port: {smtp.port}\n      starttls: true\n      ca_file: {smtp.cert}\n"
                f"      username: {USER}\n      password: env:TEST_SMTP_PASS\n"
                "      from: ir-agent@example.org\n      to: [oncall@example.org]\n"
                "      events: [approval_pending, action_failed]\n"
                "    soc-teams:\n      kind: teams\n      url: env:TEST_TEAMS_URL\n"
                "      events: [approval_pending]\n")
            cfg, _world = configure(tmp_path, daemon="  blast_radius: {hosts: 1, accounts: 1, window: 1h}\n")
            cfg.write_text(cfg.read_text() + notifications)
            with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
                for host in ("web1", "web2"):
                    res = client.post("/alerts/gen", json={"rule_id": "edr-1", "host": host, "severity": 90},
                                      headers=GEN)
                    assert res.status_code == 202, res.text
                wait_for(lambda: smtp.messages, timeout=30)
                wait_for(lambda: chat.received, timeout=30)
            (msg,) = smtp.messages
            body = msg.get_payload(decode=True).decode()
            assert msg["Subject"].startswith("[DECISION NEEDED] Approval needed: isolate-host on web2")
            assert msg["To"] == "oncall@example.org"
            assert "isolate on web2 (10.9.0.22)" in body, body  # the exact plan, from the planner
            assert "https://ir-console.example:8443/approvals/" in body
            ((kind, card),) = chat.received
            assert kind == "teams"
            assert card["attachments"][0]["content"]["actions"][0]["url"].startswith(
                "https://ir-console.example:8443/approvals/")
            assert not chat.rejected
        audit = _audit_text(tmp_path)
        sent = [json.loads(line) for line in audit.splitlines() if '"notification.sent"' in line]
        assert {r["channel"] for r in sent} == {"soc-mail", "soc-teams"}
        assert PASSWORD not in audit and "T0KEN-SECRET-PATH" not in audit


class TestTtlNotices:
    def test_release_coming_then_done(self, tmp_path: Path, monkeypatch):
        """A 12 s TTL: a 'TTL release coming' notice (at half the TTL, at most 15 min before) reaches the chat
        channel while the host is still contained, then a 'TTL release done' notice after the release."""
        with ChatReceiver() as chat:
            monkeypatch.setenv("TEST_MM_URL", chat.url("mattermost"))
            cfg, world = configure(tmp_path, rules_extra=(
                "  - name: short\n    match: {source: gen, rule_id: ttl-*}\n    runbook: isolate-host\n"
                "    params: {capture_evidence: false}\n    ttl: 12s\n"))
            cfg.write_text(cfg.read_text() + "notifications:\n  channels:\n    mm:\n      kind: mattermost\n"
                           "      url: env:TEST_MM_URL\n      events: [ttl_release]\n")
            with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
                res = client.post("/alerts/gen", json={"rule_id": "ttl-1", "host": "web2", "severity": 90},
                                  headers=GEN)
                assert res.status_code == 202, res.text
                wait_for(lambda: world.isolated.get("web2"))
                first = wait_for(lambda: chat.received, timeout=20)
                assert "coming" in first[0][1]["text"] and world.isolated.get("web2") is True
                wait_for(lambda: len(chat.received) >= 2, timeout=30)
            titles = [body["attachments"][0]["title"] for _, body in chat.received]
            assert titles[0].startswith("TTL release coming on web2")
            assert titles[1].startswith("TTL release done on web2")
            assert not chat.rejected
