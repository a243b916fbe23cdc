"""Real senders through a real daemon (fake targets): Alertmanager groups with a bad alert, Splunk's URL token,
Suricata EVE lines, replay-protected HMAC, event time beside receive time, content type."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent.intake.auth import signed_headers
from agent.store import Alert, Incident
from tests.unit.daemon_env import HMAC_SECRET, TOKEN, configure, running, wait_for

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "alerts"
GEN = {"Authorization": f"Bearer {TOKEN}"}
DAEMON = """\
    splunk: {format: splunk, token: env:TEST_GEN_TOKEN, url_token: true}
    ids: {format: suricata, token: env:TEST_GEN_TOKEN}
    wz: {format: wazuh, hmac_secret: env:TEST_WAZUH_HMAC, replay_window: 60s}
"""
RULES = """\
  - name: am-probe
    match: {source: am, rule_id: ProbeFailure}
    runbook: isolate-host
    params: {capture_evidence: false}
    policy: dry-run
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Any, httpx.Client]]:
    cfg, _ = configure(tmp_path, rules_extra=RULES)
    text = cfg.read_text().replace("  api_tokens:", DAEMON.replace("    ", "    ", 1) + "  api_tokens:")
    cfg.write_text(text)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        yield daemon, client


def stored(daemon: Any) -> list[Alert]:
    with daemon.app.store.session() as s:
        rows = list(s.scalars(select(Alert).order_by(Alert.received_at)))
        s.expunge_all()
    return rows


def test_alertmanager_group_with_bad_alerts_is_2xx_and_keeps_the_good_ones(env):
    daemon, client = env
    spec = json.loads((CORPUS / "alertmanager-v4-group.json").read_text())
    res = client.post("/alerts/am", json=spec["body"], headers=GEN)
    assert res.status_code == 202, res.text  # a 4xx would make Alertmanager drop the whole group
    answer = res.json()
    assert [a["disposition"] for a in answer["alerts"]] == ["accepted", "resolved", "invalid", "invalid"]
    assert "alerts[2].labels.severity" in answer["alerts"][2]["error"] and answer["invalid"] == 2
    rows = stored(daemon)
    assert len(rows) == 4 and rows[0].host == "server.example.org"
    assert rows[0].event_time is not None and rows[0].event_time.isoformat().startswith("2023-02-06T13:08:45")
    assert rows[0].rule_name == "ProbeFailure" and rows[0].received_at > rows[0].event_time


def test_splunk_url_token_and_null_search_name(env):
    daemon, client = env
    spec = json.loads((CORPUS / "splunk-webhook.json").read_text())
    assert client.post("/alerts/splunk", json=spec["body"]).status_code == 401
    assert client.post("/alerts/splunk?token=wrong", json=spec["body"]).status_code == 401
    res = client.post(f"/alerts/splunk?token={TOKEN}", json=spec["body"])
    assert res.status_code == 202, res.text
    [row] = stored(daemon)
    assert (row.user, row.source_ip, row.host) == ("jdoe", "198.51.100.23", None)
    # a source without url_token never reads the URL
    assert client.post(f"/alerts/gen?token={TOKEN}", json={"rule_id": "x", "host": "web1"}).status_code == 401


def test_suricata_eve_lines(env):
    daemon, client = env
    body = (CORPUS / "suricata-eve.ndjson").read_bytes()
    res = client.post("/alerts/ids", content=body, headers={**GEN, "Content-Type": "application/x-ndjson"})
    assert res.status_code == 202, res.text
    assert [a["disposition"] for a in res.json()["alerts"]] == ["no-match", "no-match"]  # the flow line skipped
    rows = stored(daemon)
    assert [(r.rule_id, r.host, r.source_ip, r.severity) for r in rows] == [
        ("2018358", "209.53.113.5", "192.168.2.14", 75), ("2001999", "10.0.250.50", "192.168.2.7", 100)]


def test_replayed_signed_request_is_refused(env):
    daemon, client = env
    raw = json.dumps({"timestamp": "2026-11-23T03:12:44.118+0000", "rule": {"level": 3, "id": "1", "description": "d"},
                      "agent": {"id": "001", "name": "web1"}}).encode()
    fresh = signed_headers(HMAC_SECRET.encode(), raw, nonce="n-1")
    assert client.post("/alerts/wz", content=raw, headers=fresh).status_code == 202
    again = client.post("/alerts/wz", content=raw, headers=fresh)  # the same request captured and sent again
    assert again.status_code == 401 and "nonce" in again.json()["detail"].lower()
    old = signed_headers(HMAC_SECRET.encode(), raw, now=time.time() - 600)
    late = client.post("/alerts/wz", content=raw, headers=old)
    assert late.status_code == 401 and "replay window" in late.json()["detail"]
    from tests.unit.daemon_env import sign
    body_only = client.post("/alerts/wz", content=raw, headers={"X-Agent-Signature": sign(raw)})
    assert body_only.status_code == 401 and "X-Agent-Timestamp" in body_only.json()["detail"]
    assert len(stored(daemon)) == 1


def test_content_type_checked(env):
    _, client = env
    res = client.post("/alerts/gen", content=b"<xml/>", headers={**GEN, "Content-Type": "application/xml"})
    assert res.status_code == 415 and "application/xml" in res.json()["detail"]


def test_event_time_is_the_incident_discovery_fact(env, tmp_path):
    daemon, client = env
    ack = client.post("/alerts/gen", json={"rule_id": "edr-1", "host": "web2",
                                           "event_time": "2026-12-04T10:00:00Z"}, headers=GEN).json()
    daemon.service.dispatcher.wait_idle(5)
    with daemon.app.store.session() as s:
        inc = s.get(Incident, ack["incident"])
        assert inc is not None and inc.discovered_at.isoformat().startswith("2026-12-04T10:00:00")
    opened = wait_for(lambda: [json.loads(line) for p in (tmp_path / "var" / "audit").glob("*.jsonl")
                               for line in p.read_text().splitlines()
                               if '"incident.opened"' in line and ack["incident"] in line])
    assert opened[0]["alert"]["event_time"].startswith("2026-12-04T10:00:00")  # the report's alert_event clock
    facts = opened[0]["facts"]
    assert facts["discovered_at"]["source"] == "event time given by gen"
    assert facts["received_at"]["value"] > facts["discovered_at"]["value"]
