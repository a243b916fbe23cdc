"""The daemon's two processes: the HTTP front answers 202 only for committed alerts, survives being killed, follows
the core when it dies, and drains on SIGTERM without losing an acknowledged alert."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from agent.store import Alert, Store
from tests.unit.daemon_env import TOKEN, configure, running, sign, wait_for, wazuh_alert

REPO = Path(__file__).resolve().parents[2]
GEN = {"Authorization": f"Bearer {TOKEN}"}
DRY_RULE = """\
  - name: gen-dry
    match: {source: gen, rule_id: "dry-*"}
    runbook: isolate-host
    params: {capture_evidence: false}
    policy: dry-run
"""


def audit_events(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((tmp / "var" / "audit").glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def stored_ids(db: Path) -> set[str]:
    store = Store(f"sqlite:///{db}")
    try:
        with store.session() as s:
            return set(s.scalars(select(Alert.id)))
    finally:
        store.close()


def post(client: httpx.Client, host: str) -> httpx.Response:
    raw = json.dumps(wazuh_alert(host)).encode()
    return client.post("/alerts/wazuh", content=raw, headers={"X-Agent-Signature": sign(raw)})


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Any, Any, Path]]:
    cfg, world = configure(tmp_path)
    with running(cfg) as d:
        yield d, world, tmp_path


class TestInProcess:
    def test_front_is_its_own_process(self, daemon):
        d, _, _ = daemon
        assert d.front.proc.pid != os.getpid() and d.front.proc.poll() is None

    def test_concurrent_alerts_are_each_stored_once_before_their_202(self, daemon):
        """120 alerts over 12 connections at once: every answer is a 202 whose alert is already in the store; each
        host opens one incident, the rest join it; each host is isolated once."""
        d, world, tmp = daemon
        answers: list[dict[str, Any]] = []
        missing: list[str] = []
        lock = threading.Lock()

        def sender(n: int) -> None:
            with httpx.Client(base_url=d.url, timeout=30) as client:
                for i in range(10):
                    res = post(client, ("web1", "web2", "web3")[(n + i) % 3])
                    assert res.status_code == 202, res.text
                    ack = res.json()
                    with d.app.store.session() as s:  # durable before the answer
                        if s.get(Alert, ack["alert_id"]) is None:
                            missing.append(ack["alert_id"])
                    with lock:
                        answers.append(ack)
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 120 and missing == []
        ids = [a["alert_id"] for a in answers]
        assert len(set(ids)) == 120 and stored_ids(tmp / "var" / "agent.db") == set(ids)
        by_incident: dict[str, list[str]] = {}
        for a in answers:
            by_incident.setdefault(a["incident"], []).append(a["disposition"])
        assert len(by_incident) == 3
        assert all(sorted(v) == ["accepted"] + ["deduped"] * 39 for v in by_incident.values())
        d.service.dispatcher.wait_idle(10)
        assert d.service.runner.wait_idle(10)
        assert world.applies == {"web1": 1, "web2": 1, "web3": 1}

    def test_store_failure_is_503_audited_and_claims_nothing(self, daemon):
        """The store refuses the write: 503, ``alert.store_failed`` audited, nothing stored or done; the retry is a
        new incident (the dedupe claim was given back), not a duplicate of one that never existed."""
        d, world, tmp = daemon

        def refuse(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("INSERT INTO alerts"):
                raise OSError("disk I/O error")
        event.listen(d.app.store.engine, "before_cursor_execute", refuse)
        with httpx.Client(base_url=d.url, timeout=30) as client:
            res = post(client, "web2")
            assert res.status_code == 503 and "retry" in res.json()["detail"]
            assert [e for e in audit_events(tmp) if e["event"] == "alert.store_failed"]
            assert stored_ids(tmp / "var" / "agent.db") == set()
            event.remove(d.app.store.engine, "before_cursor_execute", refuse)
            again = post(client, "web2")
        assert again.status_code == 202 and again.json()["disposition"] == "accepted"
        d.service.dispatcher.wait_idle(5)
        assert d.service.runner.wait_idle(5)
        assert world.applies == {"web2": 1}

    def test_a_killed_front_is_restarted_on_the_same_socket(self, daemon):
        d, _, tmp = daemon
        first = d.front.proc.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: d.front.proc.pid != first and d.front.proc.poll() is None)
        with httpx.Client(base_url=d.url, timeout=30) as client:
            res = wait_for(lambda: _try(lambda: client.get("/healthz")))
            assert res.status_code == 200 and post(client, "web1").status_code == 202
        exited = [e for e in audit_events(tmp) if e["event"] == "daemon.front_exited"]
        assert exited and exited[0]["pid"] == first and exited[0]["restarting"] is True


def _try(fn: Callable[[], httpx.Response]) -> httpx.Response | None:
    try:
        return fn()
    except httpx.HTTPError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[], tuple[subprocess.Popen[bytes], str]]]:
    """``agent daemon`` as a process of its own (real signals), with a dry-run rule for source ``gen``."""
    cfg, _ = configure(tmp_path, rules_extra=DRY_RULE)
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {**os.environ, "AGENT_NO_WARM": "1", "PYTHONPATH": str(REPO)}
        with open(tmp_path / "daemon.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "daemon", "-c", str(cfg), "--listen",
                                     f"127.0.0.1:{port}"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            return _try(lambda: httpx.get(url + "/healthz", timeout=2)) is not None
        wait_for(up, 30)
        return proc, url
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def front_pid(core: int) -> int:
    children = Path(f"/proc/{core}/task/{core}/children").read_text().split()
    return int(children[0])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class TestProcesses:
    def test_sigterm_drains_and_every_202_is_stored(self, spawn, tmp_path: Path):
        """SIGTERM in the middle of a burst: the daemon exits 0, and every alert that got a 202 is in the store."""
        proc, url = spawn()
        acked: list[str] = []
        statuses: list[int | str] = []
        lock = threading.Lock()
        started = threading.Event()

        def sender(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for i in range(60):
                    started.set()
                    try:
                        res = client.post("/alerts/gen", json={"rule_id": "dry-1", "host": f"h{n}-{i}"}, headers=GEN)
                    except httpx.HTTPError as exc:
                        with lock:
                            statuses.append(type(exc).__name__)
                        return
                    with lock:
                        statuses.append(res.status_code)
                        if res.status_code == 202:
                            acked.append(res.json()["alert_id"])
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        started.wait(10)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0
        assert acked and set(acked) <= stored_ids(tmp_path / "var" / "agent.db")
        assert set(statuses) <= {202, 503, "ConnectError", "RemoteProtocolError", "ReadError"}, statuses
        assert '"daemon.stopped"' in "".join(p.read_text() for p in (tmp_path / "var" / "audit").glob("*.jsonl"))

    def test_a_killed_core_takes_the_front_along_and_frees_the_port(self, spawn):
        proc, url = spawn()
        front = front_pid(proc.pid)
        assert alive(front)
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not alive(front), 10)
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))  # nobody listens on it any more
