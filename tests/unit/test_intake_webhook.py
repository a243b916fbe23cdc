"""The webhook and API of a real daemon on loopback (fake targets): 4xx answers act on nothing; alerts are
stored before the answer, deduped, limited by the blast radius, and approvals decide what runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from agent.store import Action, Alert, Store
from tests.unit.daemon_env import API_TOKEN, TOKEN, configure, running, sign, wait_for, wazuh_alert

API = {"Authorization": f"Bearer {API_TOKEN}"}
GEN = {"Authorization": f"Bearer {TOKEN}"}


def count(store: Store, model: Any) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def audit_events(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((tmp / "var" / "audit").glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Any, Any, httpx.Client, Path]]:
    cfg, world = configure(tmp_path)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        yield daemon, world, client, tmp_path


def post_wazuh(client: httpx.Client, body: dict[str, Any] | bytes, *, signature: str | None = None,
               **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", "X-Agent-Signature": signature or sign(raw), **headers}
    return client.post("/alerts/wazuh", content=raw, headers=hdrs)


class TestRejections:
    def _nothing_acted(self, daemon: Any, world: Any) -> None:
        daemon.service.dispatcher.wait_idle(5)
        assert count(daemon.app.store, Alert) == 0
        assert count(daemon.app.store, Action) == 0
        assert world.applies == {} and world.opens == 0

    def test_wrong_signature(self, env):
        """A body signed with another secret gets 401 with a reason, is audited, and nothing is stored or done."""
        daemon, world, client, tmp = env
        raw = json.dumps(wazuh_alert()).encode()
        res = post_wazuh(client, raw, signature=sign(raw, "not-the-secret"))
        assert res.status_code == 401 and "signature does not match" in res.json()["detail"]
        self._nothing_acted(daemon, world)
        rejected = [e for e in audit_events(tmp) if e["event"] == "alert.rejected"]
        assert rejected and rejected[-1]["status"] == 401 and rejected[-1]["code"] == "unauthenticated"
        assert "not-the-secret" not in (tmp / "var" / "audit").joinpath(
            min(p.name for p in (tmp / "var" / "audit").glob("*.jsonl"))).read_text()

    def test_modified_body(self, env):
        """A valid signature of a different body is refused (the signature covers the exact bytes)."""
        daemon, world, client, _ = env
        raw = json.dumps(wazuh_alert()).encode()
        res = post_wazuh(client, raw.replace(b"web1", b"web2"), signature=sign(raw))
        assert res.status_code == 401
        self._nothing_acted(daemon, world)

    def test_missing_credentials(self, env):
        """No signature header, or a wrong bearer token, is 401 naming what is required."""
        daemon, world, client, _ = env
        res = client.post("/alerts/wazuh", json=wazuh_alert())
        assert res.status_code == 401 and "X-Agent-Signature" in res.json()["detail"]
        res = client.post("/alerts/gen", json={"rule_id": "edr-1", "host": "web1"},
                          headers={"Authorization": "Bearer wrong"})
        assert res.status_code == 401 and "token" in res.json()["detail"]
        self._nothing_acted(daemon, world)

    def test_oversized_body(self, env):
        """Bodies over max_body_bytes get 413, by Content-Length and by streamed size (chunked)."""
        daemon, world, client, _ = env
        big = json.dumps({**wazuh_alert(), "full_log": "x" * 5000}).encode()
        assert post_wazuh(client, big).status_code == 413

        def chunks() -> Iterator[bytes]:
            yield big[:3000]
            yield big[3000:]
        res = client.post("/alerts/wazuh", content=chunks(), headers={"X-Agent-Signature": sign(big)})
        assert res.status_code == 413 and "limit" in res.json()["detail"]
        self._nothing_acted(daemon, world)

    def test_invalid_json(self, env):
        """A correctly signed body that is not JSON is 400."""
        daemon, world, client, _ = env
        res = post_wazuh(client, b'{"rule": {"level": 10,')
        assert res.status_code == 400 and "not valid JSON" in res.json()["detail"]
        self._nothing_acted(daemon, world)

    def test_unknown_source(self, env):
        """An unconfigured source is 404 listing the configured ones."""
        daemon, world, client, _ = env
        res = client.post("/alerts/crowdstrike", json={"x": 1}, headers=GEN)
        assert res.status_code == 404 and "wazuh" in res.json()["detail"]
        self._nothing_acted(daemon, world)

    def test_missing_host(self, env):
        """An authenticated alert naming no host, user or address is 400 and nothing happens."""
        daemon, world, client, _ = env
        body = wazuh_alert()
        del body["agent"], body["data"]
        res = post_wazuh(client, body)
        assert res.status_code == 400 and "host" in res.json()["detail"]
        self._nothing_acted(daemon, world)
        metrics = client.get("/metrics").text
        assert 'agent_alerts_rejected_total{reason="malformed",source="wazuh"} 1.0' in metrics

    def test_api_needs_token(self, env):
        """Incidents and approvals need an API token; a source token is not one."""
        _, _, client, _ = env
        assert client.get("/approvals").status_code == 401
        assert client.get("/approvals", headers=GEN).status_code == 401
        assert client.get("/incidents/INC-1", headers=API).status_code == 404


class TestAccept:
    def test_alert_isolates_then_dedupes(self, env):
        """A matching alert is stored before 202, isolates the host; the same alert again joins the incident."""
        daemon, world, client, _ = env
        res = post_wazuh(client, wazuh_alert("web1"))
        assert res.status_code == 202, res.text
        ack = res.json()
        assert ack["disposition"] == "accepted" and ack["incident"].startswith("INC-")
        with daemon.app.store.session() as s:  # persisted before the answer
            assert s.get(Alert, ack["alert_id"]) is not None
        wait_for(lambda: world.isolated.get("web1"))
        inc = wait_for(lambda: (r := client.get(f"/incidents/{ack['incident']}", headers=API).json())
                       and r["status"] == "contained" and r["alerts"][0]["disposition"] == "executed:done" and r)
        assert [(a["target"], a["action"], a["state"]) for a in inc["actions"]] == [("web1", "isolate", "done")]
        again = post_wazuh(client, wazuh_alert("web1")).json()
        assert (again["disposition"], again["incident"]) == ("deduped", ack["incident"])
        daemon.service.dispatcher.wait_idle(5)
        assert daemon.service.runner.wait_idle(5)
        assert world.applies == {"web1": 1}
        assert count(daemon.app.store, Action) == 1
        assert client.get(f"/incidents/{ack['incident']}", headers=API).json()["alert_count"] == 2

    def test_unmatched_and_resolved(self, env):
        """Alerts no rule matches, and resolved Alertmanager alerts, are stored and never acted on."""
        daemon, world, client, _ = env
        low = post_wazuh(client, wazuh_alert("web1", level=3)).json()
        assert (low["disposition"], low["incident"]) == ("no-match", None)
        am = {"version": "4", "status": "resolved", "alerts": [
            {"status": "resolved", "labels": {"alertname": "edr-x", "instance": "web2:9100"}}]}
        res = client.post("/alerts/am", json=am, headers=GEN)
        assert res.status_code == 202 and res.json()["disposition"] == "resolved"
        daemon.service.dispatcher.wait_idle(5)
        assert count(daemon.app.store, Alert) == 2 and world.applies == {}

    def test_protected_host_refused(self, env):
        """A rule naming a protected host is refused by the planner; the alert records why."""
        _, world, client, _ = env
        ack = client.post("/alerts/gen", json={"rule_id": "edr-9", "host": "dc1"}, headers=GEN).json()
        inc = wait_for(lambda: (r := client.get(f"/incidents/{ack['incident']}", headers=API).json())
                       and r["alerts"][0]["disposition"] == "refused" and r["status"] == "closed" and r)
        assert inc["actions"] == [] and world.opens == 0

    def test_health_and_openapi(self, env):
        """Health answers, and the OpenAPI schema documents the webhook's answers."""
        _, _, client, _ = env
        assert client.get("/healthz").json()["status"] == "ok"
        schema = client.get("/openapi.json").json()
        answers = schema["paths"]["/alerts/{source}"]["post"]["responses"]
        assert {"202", "400", "401", "404", "413"} <= set(answers)
