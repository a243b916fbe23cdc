"""Notifications as the people on call receive them: real SMTP (STARTTLS + AUTH) on loopback, chat payloads that
each product's documented rules accept, a queue that survives failures and never delays a containment, and no
secret in any audit record."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.notify.config import Channel, NotifyConfig, parse_notifications
from agent.notify.deliver import DeliveryError, deliver
from agent.notify.events import Notice, notice_for
from agent.notify.formats import mattermost_payload, slack_payload, teams_payload
from agent.notify.outbox import Outbox
from agent.notify.worker import NotifyWorker
from agent.secrets import SecretRef
from agent.store import Notification, Store
from agent.yamlsrc import load_yaml
from tests.doubles.notify.chat import ChatReceiver, Invalid, check_mattermost, check_slack, check_teams
from tests.doubles.notify.smtp import PASSWORD, USER, SmtpServer, free_port

APPROVAL = {"event": "approval.requested", "seq": 41, "incident": "INC-1", "approval_id": "ab12cd34",
            "runbook": "isolate-host", "target": "web01", "why": "blast radius: 3 hosts already contained",
            "expires_at": "2026-12-04T04:00:00+00:00"}


def _parse(tmp: Path, text: str) -> NotifyConfig:
    (tmp / "agent.yaml").write_text(text)
    return parse_notifications(load_yaml(tmp / "agent.yaml").root().get("notifications"))


class _Audit:
    """Collects audit records (the real AuditLog is exercised in the daemon test)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        rec = {"event": event, **fields}
        self.records.append(rec)
        return rec


def _plan_notice() -> Notice:
    notice = notice_for(APPROVAL, "https://console.example:8443")
    assert notice is not None
    return Notice(**{**notice.__dict__, "detail": ["1. isolate: isolate on web01 (10.9.0.21) via ssh_linux",
                                                    "   keep tcp/22 from 10.9.0.10; drop everything else"]})


class TestConfig:
    def test_inline_webhook_url_refused_without_echo(self, tmp_path: Path):
        """A webhook URL carries its token: inline values are refused and never repeated in the error."""
        with pytest.raises(ConfigError) as err:
            _parse(tmp_path, "notifications:\n  channels:\n    t:\n      kind: teams\n"
                             "      url: https://x.webhook.office.com/SECRET-TOKEN\n      events: [drift]\n")
        assert "SECRET-TOKEN" not in str(err.value) and "secret reference" in str(err.value)
        assert err.value.line == 5 and "channels.t.url" in str(err.value)

    def test_unknown_event_names_file_line_and_known_events(self, tmp_path: Path):
        with pytest.raises(ConfigError, match=r"'aproval_pending' is not an event \(approval_pending"):
            _parse(tmp_path, "notifications:\n  channels:\n    m:\n      kind: slack\n      url: env:X\n"
                             "      events: [aproval_pending]\n")

    def test_password_only_over_tls(self, tmp_path: Path):
        with pytest.raises(ConfigError, match="only sent over TLS"):
            _parse(tmp_path, "notifications:\n  channels:\n    m:\n      kind: smtp\n      host: 127.0.0.1\n"
                             "      starttls: false\n      password: env:P\n      from: a@b.c\n      to: [d@e.f]\n"
                             "      events: [drift]\n")

    def test_smtp_channel_parsed(self, tmp_path: Path):
        cfg = _parse(tmp_path, "notifications:\n  console_url: https://console.example:8443/\n  channels:\n"
                               "    soc:\n      kind: smtp\n      host: 127.0.0.1\n      port: 2525\n"
                               "      username: u\n      password: env:P\n      from: ir@example.org\n"
                               "      to: [soc@example.org]\n      events: [approval_pending, action_failed]\n")
        (ch,) = cfg.channels
        assert (ch.host, ch.port, ch.starttls, ch.recipients) == ("127.0.0.1", 2525, True, ("soc@example.org",))
        assert cfg.console_url == "https://console.example:8443"
        assert [c.name for c in cfg.channels_for("action_failed")] == ["soc"]
        assert cfg.channels_for("drift") == []


class TestEvents:
    def test_approval_notice_links_to_the_console_page(self):
        n = notice_for(APPROVAL, "https://console.example:8443")
        assert n is not None and n.event == "approval_pending" and n.severity == "warning"
        assert n.link == "https://console.example:8443/approvals/ab12cd34"
        assert "agent approve ab12cd34" in n.summary

    @pytest.mark.parametrize(("record", "event"), [
        ({"event": "action.failed", "target": "web01", "action": "isolate", "error": "unreachable"},
         "action_failed"),
        ({"event": "action.transition", "to_state": "in_doubt", "target": "web01", "action": "isolate"},
         "action_in_doubt"),
        ({"event": "containment.drift", "target": "web01", "action": "isolate"}, "drift"),
        ({"event": "action.undone", "runbook": "ttl-release", "target": "web01", "action": "isolate"},
         "ttl_release"),
        ({"event": "action.done", "target": "web01", "action": "isolate", "undo_of": None}, "action_done"),
    ])
    def test_records_that_need_people(self, record: dict[str, Any], event: str):
        notice = notice_for(record)
        assert notice is not None and notice.event == event

    @pytest.mark.parametrize("event", ["action.transition", "alert.deduped", "action.undone", "plan.created",
                                       "notification.sent"])
    def test_records_that_need_nobody(self, event: str):
        assert notice_for({"event": event, "to_state": "verifying", "runbook": "release-host"}) is None


class TestChatFormats:
    def test_receiver_refuses_what_products_refuse(self):
        """The double is not a mirror: it refuses the documented failures (failures first)."""
        with pytest.raises(Invalid, match="header"):
            check_slack({"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]})
        with pytest.raises(Invalid, match="10 fields"):
            check_slack({"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "a"}] * 11}]})
        with pytest.raises(Invalid, match="fallback"):
            check_mattermost({"attachments": [{"text": "no fallback"}]})
        with pytest.raises(Invalid, match="contentType"):
            check_teams({"type": "message", "attachments": [{"contentType": "text/plain", "content": {}}]}, 10)
        with pytest.raises(Invalid, match="28 KB"):
            check_teams({}, 29 * 1024)

    def test_our_payloads_pass_even_with_a_huge_plan(self):
        notice = _plan_notice()
        huge = Notice(**{**notice.__dict__, "title": "T" * 400, "detail": ["x" * 200] * 400,
                         "facts": tuple((f"k{i}", "v") for i in range(14))})
        for n in (notice, huge):
            check_slack(slack_payload(n))
            check_mattermost(mattermost_payload(n))
            body = json.dumps(teams_payload(n)).encode()
            check_teams(json.loads(body), len(body))

    def test_delivered_to_each_product(self, monkeypatch):
        with ChatReceiver() as rx:
            for kind in ("slack", "mattermost", "teams"):
                monkeypatch.setenv(f"HOOK_{kind.upper()}", rx.url(kind))
                ch = Channel(name=kind, kind=kind, events=("approval_pending",),
                             url=SecretRef("env", f"HOOK_{kind.upper()}"))
                outcome = deliver(ch, _plan_notice())
                assert "T0KEN-SECRET-PATH" not in outcome and "200" in outcome
        assert [k for k, _ in rx.received] == ["slack", "mattermost", "teams"]
        assert not rx.rejected

    def test_http_errors_are_mapped_without_the_token(self, monkeypatch):
        with ChatReceiver(status_override=503) as rx:
            monkeypatch.setenv("HOOK", rx.url("slack"))
            ch = Channel(name="s", kind="slack", events=("drift",), url=SecretRef("env", "HOOK"))
            with pytest.raises(DeliveryError) as err:
                deliver(ch, _plan_notice())
        assert not err.value.permanent and "503" in str(err.value)
        assert "T0KEN" not in str(err.value)


class TestEmail:
    def test_approval_mail_over_starttls_with_login(self, tmp_path: Path, monkeypatch):
        """The approval-pending mail arrives with the exact plan, the link, an RFC 3834 header."""
        monkeypatch.setenv("SMTP_PASS", PASSWORD)
        with SmtpServer(tmp_path) as smtp:
            ch = Channel(name="soc", kind="smtp", events=("approval_pending",), host="127.0.0.1", port=smtp.port,
                         username=USER, password=SecretRef("env", "SMTP_PASS"), sender="ir@example.org",
                         recipients=("soc@example.org",))
            outcome = deliver(ch, _plan_notice(), ssl_context=smtp.client_context())
            assert "accepted" in outcome
            (msg,) = smtp.messages
        assert msg["Subject"].startswith("[DECISION NEEDED] Approval needed: isolate-host on web01")
        assert msg["Auto-Submitted"] == "auto-generated"
        body = msg.get_payload(decode=True).decode()
        assert "keep tcp/22 from 10.9.0.10" in body
        assert "https://console.example:8443/approvals/ab12cd34" in body
        assert PASSWORD not in body

    def test_wrong_password_is_permanent_and_not_echoed(self, tmp_path: Path, monkeypatch):
        monkeypatch.setenv("SMTP_PASS", "wrong-" + PASSWORD)
        with SmtpServer(tmp_path) as smtp:
            ch = Channel(name="soc", kind="smtp", events=("drift",), host="127.0.0.1", port=smtp.port,
                         username=USER, password=SecretRef("env", "SMTP_PASS"), sender="ir@example.org",
                         recipients=("soc@example.org",))
            with pytest.raises(DeliveryError) as err:
                deliver(ch, _plan_notice(), ssl_context=smtp.client_context())
        assert err.value.permanent and PASSWORD not in str(err.value)

    def test_untrusted_certificate_is_refused(self, tmp_path: Path, monkeypatch):
        """STARTTLS to a server whose certificate is not trusted: nothing (no password) is sent."""
        monkeypatch.setenv("SMTP_PASS", PASSWORD)
        with SmtpServer(tmp_path) as smtp:
            ch = Channel(name="soc", kind="smtp", events=("drift",), host="127.0.0.1", port=smtp.port,
                         username=USER, password=SecretRef("env", "SMTP_PASS"), sender="ir@example.org",
                         recipients=("soc@example.org",))
            with pytest.raises(DeliveryError, match="SSL"):
                deliver(ch, _plan_notice())  # verified against the system trust store: our test CA is not in it
            assert not smtp.messages


def _store(tmp: Path) -> Store:
    return Store(f"sqlite:///{tmp / 'agent.db'}")


class TestQueue:
    def test_dead_smtp_server_delays_nothing_and_is_retried(self, tmp_path: Path, monkeypatch):
        """Nobody listens on the port: queuing returns at once, delivery fails in the worker, the row is
        rescheduled with backoff, and once a server listens there the notice arrives (audited each time)."""
        monkeypatch.setenv("SMTP_PASS", PASSWORD)
        port = free_port()
        ch = Channel(name="soc", kind="smtp", events=("approval_pending",), host="127.0.0.1", port=port,
                     username=USER, password=SecretRef("env", "SMTP_PASS"), sender="ir@example.org",
                     recipients=("soc@example.org",), timeout=2)
        config = NotifyConfig(channels=(ch,), retry_base_s=0.2, retry_max_s=1.0)
        store, audit = _store(tmp_path), _Audit()
        sent_with: list[Any] = []

        def send(channel: Channel, notice: Notice) -> str:
            return deliver(channel, notice, ssl_context=sent_with[0] if sent_with else None)

        worker = NotifyWorker(Outbox(store, config), config, audit, send=send)
        worker.on_record(APPROVAL)  # what the audit listener does: one INSERT, no network
        assert worker.deliver_due() == 0
        retry = [r for r in audit.records if r["event"] == "notification.retry"]
        assert len(retry) == 1 and retry[0]["channel"] == "soc" and "refused" in retry[0]["error"].lower()
        with store.session() as s:
            (row,) = s.query(Notification).all()
            assert row.state == "queued" and row.attempts == 1 and row.next_at > row.created_at
        time.sleep(0.3)  # past the first backoff (0.2 s)
        server = SmtpServer(tmp_path)
        server.controller.port = port
        with server:
            sent_with.append(server.client_context())
            deadline = time.monotonic() + 10
            while worker.deliver_due() == 0:
                assert time.monotonic() < deadline, audit.records
                time.sleep(0.2)
            assert len(server.messages) == 1
        assert [r["event"] for r in audit.records].count("notification.sent") == 1
        assert PASSWORD not in json.dumps(audit.records)
        store.close()

    def test_blocked_delivery_never_blocks_recording(self, tmp_path: Path):
        """A delivery stuck for seconds (a hung mail server) holds only the notify thread: recording and
        queuing ten more notices meanwhile returns immediately."""
        release = threading.Event()
        started = threading.Event()

        def hung_send(channel: Channel, notice: Notice) -> str:
            started.set()
            release.wait(30)
            return "accepted late"

        ch = Channel(name="hook", kind="slack", events=("action_failed",), url=SecretRef("env", "UNUSED"))
        config = NotifyConfig(channels=(ch,))
        store, audit = _store(tmp_path), _Audit()
        worker = NotifyWorker(Outbox(store, config), config, audit, send=hung_send, poll_seconds=0.05)
        worker.start()
        try:
            worker.on_record({"event": "action.failed", "target": "web01", "action": "isolate", "seq": 1})
            assert started.wait(10)
            begun = time.monotonic()
            for i in range(10):
                worker.on_record({"event": "action.failed", "target": f"h{i}", "action": "isolate", "seq": i + 2})
            queued_in = time.monotonic() - begun
            assert queued_in < 5, queued_in  # generous: the point is "not 30 s", not a speed target
            assert Outbox(store, config).counts()["queued"] >= 10
        finally:
            release.set()
            worker.stop()
            store.close()

    def test_permanent_failure_is_given_up_and_audited(self, tmp_path: Path):
        def refuse(channel: Channel, notice: Notice) -> str:
            raise DeliveryError("slack webhook hooks.slack.com: HTTP 404", permanent=True)

        ch = Channel(name="hook", kind="slack", events=("drift",), url=SecretRef("env", "UNUSED"))
        config = NotifyConfig(channels=(ch,))
        store, audit = _store(tmp_path), _Audit()
        worker = NotifyWorker(Outbox(store, config), config, audit, send=refuse)
        worker.on_record({"event": "containment.drift", "target": "web01", "seq": 3})
        worker.deliver_due()
        assert [r["event"] for r in audit.records] == ["notification.failed"]
        assert Outbox(store, config).counts() == {"failed": 1}
        store.close()


def test_env_not_leaked_into_records(monkeypatch):
    """Sanity: nothing above put the SMTP password into the process environment beyond the tests' own vars."""
    assert os.environ.get("SMTP_PASS") in (None, PASSWORD)
