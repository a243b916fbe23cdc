"""Unauthenticated floods are audited as one record per source per minute (plus the first one at once).

Found: 5,000 requests with a wrong signature wrote 4,992 audit records.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.unit.daemon_env import configure, running, sign


def _events(tmp: Path) -> list[dict[str, object]]:
    return [json.loads(line) for p in sorted((tmp / "var" / "audit").glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def test_flood_of_bad_signatures_is_summed_up(tmp_path: Path) -> None:
    cfg, _ = configure(tmp_path)
    raw = b'{"rule": {"level": 3, "id": "1"}, "agent": {"name": "web1"}}'
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as client:
        for _ in range(300):
            res = client.post("/alerts/wazuh", content=raw, headers={
                "X-Agent-Signature": sign(raw, "wrong-secret"), "Content-Type": "application/json"})
            assert res.status_code == 401
        for _ in range(50):
            assert client.post("/alerts/nope", content=raw).status_code == 404
        metrics = client.get("/metrics").text
    assert 'agent_alerts_rejected_total{reason="unauthenticated",source="wazuh"} 300.0' in metrics
    events = _events(tmp_path)
    firsts = [e for e in events if e["event"] == "alert.rejected"]
    summaries = [e for e in events if e["event"] == "alert.rejected_summary"]
    assert len(firsts) == 2 and len(summaries) == 2  # one per source: wazuh, (unknown)
    by_source = {e["source"]: e for e in summaries}
    assert by_source["wazuh"]["count"] == 299 and by_source["(unknown)"]["count"] == 49
    assert by_source["wazuh"]["clients"] == ["127.0.0.1"]
