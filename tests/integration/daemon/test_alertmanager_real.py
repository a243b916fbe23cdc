"""Debian's real ``prometheus-alertmanager`` posting to the daemon (fake targets behind it).

Alertmanager runs on loopback with its own storage directory and clustering off (``--cluster.listen-address=``
empty), alerts go in through its API v2 (``POST /api/v2/alerts``), and its webhook notifier posts groups to
``/alerts/am`` with a bearer token (``http_config.authorization``). Checked in the daemon's store: a group with
one bad alert (the good one is stored and acts, the bad one is recorded invalid, and Alertmanager is answered
2xx — a 4xx would make it drop the group), a repeat of an alert already acted on (deduped, applied once), and the
resolved notification (linked to the incident; the containment stays).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent.store import Alert
from tests.unit.daemon_env import TOKEN, configure, running, wait_for

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager is not installed (make deps)")]

RULES = """\
  - name: am-cryptominer
    match: {source: am, rule_id: "Cryptominer*"}
    runbook: isolate-host
    params: {capture_evidence: false}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Any, Any, httpx.Client]]:
    cfg, world = configure(tmp_path, rules_extra=RULES)
    with running(cfg) as daemon:
        am_port = _port()
        (tmp_path / "am.yml").write_text(f"""\
route:
  receiver: agent
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: agent
    webhook_configs:
      - url: {daemon.url}/alerts/am
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {TOKEN}}}
""")
        (tmp_path / "am-data").mkdir()
        log = open(tmp_path / "am.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([str(BINARY), f"--config.file={tmp_path / 'am.yml'}",
                                 f"--storage.path={tmp_path / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                                 "--log.level=debug"], stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{am_port}", timeout=5) as am:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if am.get("/-/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError((tmp_path / "am.log").read_text()[-3000:])
                    time.sleep(0.1)
                yield daemon, world, am
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def _alert(instance: str, severity: str, *, ends: datetime | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {"labels": {"alertname": "CryptominerDetected", "instance": f"{instance}:9100",
                                       "severity": severity, "job": "node"},
                            "annotations": {"summary": f"xmrig on {instance}"},
                            "startsAt": (now - timedelta(minutes=2)).isoformat()}
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


def _rows(daemon: Any) -> list[Alert]:
    with daemon.app.store.session() as s:
        rows = list(s.scalars(select(Alert).order_by(Alert.received_at)))
        s.expunge_all()
    return rows


def test_real_alertmanager_group_repeat_and_resolved(stack):
    daemon, world, am = stack
    # 1. one group, two alerts, one with a severity word nobody knows
    assert am.post("/api/v2/alerts", json=[_alert("web1", "critical"), _alert("web2", "spicy")]).status_code == 200
    rows = wait_for(lambda: (r := _rows(daemon)) and len(r) >= 2 and r, timeout=30)
    by_host = {r.host: r for r in rows}
    good = by_host["web1"]
    bad = next(r for r in rows if r.disposition == "invalid")
    assert good.disposition.startswith(("accepted", "executing", "executed"))
    assert good.source == "am" and good.rule_name == "CryptominerDetected"
    assert "labels.severity" in bad.raw["normalized"]["error"]
    wait_for(lambda: (world.isolated.get("web1") or world.isolated.get("10.9.0.21")), timeout=30)

    # 2. the group changes (web3 joins): Alertmanager re-sends web1 with it — deduped, applied once
    assert am.post("/api/v2/alerts", json=[_alert("web3", "critical")]).status_code == 200
    wait_for(lambda: any(r.host == "web3" for r in _rows(daemon)), timeout=30)
    rows = _rows(daemon)
    web1 = [r for r in rows if r.host == "web1"]
    assert len(web1) >= 2 and {r.disposition for r in web1[1:]} <= {"deduped"}
    assert len({r.incident_id for r in web1}) == 1
    wait_for(lambda: (world.isolated.get("web3") or world.isolated.get("10.9.0.23")), timeout=30)
    assert world.applies.get("web1", world.applies.get("10.9.0.21")) == 1

    # 3. web1 resolves: the notification is stored as resolved and linked to web1's incident; still isolated
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert am.post("/api/v2/alerts", json=[_alert("web1", "critical", ends=past)]).status_code == 200
    resolved = wait_for(lambda: [r for r in _rows(daemon) if r.host == "web1" and r.disposition == "resolved"
                                 and r.incident_id], timeout=30)
    assert resolved[0].incident_id == web1[0].incident_id
    assert (world.isolated.get("web1") or world.isolated.get("10.9.0.21"))
