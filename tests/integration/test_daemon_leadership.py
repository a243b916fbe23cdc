"""Two daemons on one real PostgreSQL (issue 19): both accept alerts and dedupe through the database; exactly
one — the holder of the leadership advisory lock (agent/leader.py) — runs the scheduler; when it dies the other
takes over within 10 s and the TTL releases still fire, once.

Daemons run in this process over the fake connector (tests/unit/daemon_env.py), each with its own config dir
and audit log, both on one private PostgreSQL (tests/integration/pg_server.py); the last test runs two real
``agent daemon`` processes and SIGKILLs the leader.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from agent.leader import LEADER_LOCK_KEY
from agent.store import Action
from tests.integration.pg_server import fresh_database, private_postgres
from tests.unit.daemon_env import TOKEN, configure, running, wait_for
from tests.unit.fake_connector import FakeConnector, FakeWorld
from tests.unit.test_intake_webhook import audit_events

GEN = {"Authorization": f"Bearer {TOKEN}"}
TTL_RULE = ("  - name: short\n    match: {{source: gen, rule_id: ttl-*}}\n    runbook: isolate-host\n"
            "    params: {{capture_evidence: false}}\n    ttl: {ttl}\n")


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    with private_postgres("leader-pg-") as url:
        yield url


def two_configs(tmp: Path, url: str, ttl: str) -> tuple[Path, Path, FakeWorld]:
    """Two daemon configurations on one database (one set of targets: the fake world is shared)."""
    cfgs = []
    for name in ("a", "b"):
        (tmp / name).mkdir()
        cfg, world = configure(tmp / name, rules_extra=TTL_RULE.format(ttl=ttl))
        cfg.write_text(cfg.read_text().replace("database: var/agent.db", f"database: {url}"))
        cfgs.append(cfg)
    FakeConnector.world = world
    return cfgs[0], cfgs[1], world


def post(daemon: Any, host: str, rule: str) -> dict[str, Any]:
    res = httpx.post(daemon.url + "/alerts/gen", json={"rule_id": rule, "host": host, "severity": 90},
                     headers=GEN, timeout=10)
    assert res.status_code == 202, res.text
    return dict(res.json())


def journal(daemon: Any, target: str) -> list[Action]:
    with daemon.app.store.session() as s:
        return list(s.scalars(select(Action).where(Action.target == target).order_by(Action.seq)))


def events(cfg: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(cfg.parent) if e["event"] == name]


def leaders(*daemons: Any) -> list[Any]:
    return [d for d in daemons if d.leadership.is_leader]


def test_one_leader_ttl_fires_once_and_dedupe_is_shared(pg, tmp_path: Path):
    """Exactly one leader; a TTL job scheduled by the follower fires once (by the leader); the same alert posted
    to A then B makes one incident, one action (failed before: no leadership — both schedulers fired every job,
    and the follower's paused scheduler did not exist)."""
    url = fresh_database(pg, "leader_one")
    cfg_a, cfg_b, world = two_configs(tmp_path, url, ttl="3s")
    with ExitStack() as stack:
        a = stack.enter_context(running(cfg_a))
        b = stack.enter_context(running(cfg_b))
        assert a.leadership.is_leader and not b.leadership.is_leader
        time.sleep(b.leadership.poll * 1.5)  # B has tried the lock since
        assert leaders(a, b) == [a]
        assert [e["event"] for e in events(cfg_a, "daemon.leader_acquired")] == ["daemon.leader_acquired"]
        assert events(cfg_b, "daemon.leader_acquired") == []
        assert [httpx.get(d.url + "/healthz").json()["scheduler"] for d in (a, b)] == ["leader", "follower"]

        post(b, "web2", "ttl-1")  # the follower acts on it and schedules the release into the shared store
        wait_for(lambda: world.isolated.get("web2"))
        wait_for(lambda: world.isolated.get("web2") is False, timeout=15)
        time.sleep(3)  # long enough for a second firing (B's scheduler, if it ran) to show
        assert [r.kind for r in journal(a, "web2")] == ["apply", "undo"]
        assert not events(cfg_a, "ttl.skipped") and not events(cfg_b, "ttl.skipped")

        post(a, "web1", "edr-1")
        wait_for(lambda: world.isolated.get("web1"))
        post(b, "web1", "edr-1")  # same alert through the other daemon (a load balancer's choice)
        a.service.dispatcher.wait_idle(10)
        b.service.dispatcher.wait_idle(10)
        assert a.service.runner.wait_idle(10) and b.service.runner.wait_idle(10)
        assert [r.kind for r in journal(a, "web1")] == ["apply"]
        assert world.applies.get("web1") == 1


def test_leader_dies_follower_takes_over_and_ttl_fires_once(pg, tmp_path: Path):
    """The leader dies (its lock session ends, its scheduler is gone): the follower leads within 10 s, and a TTL
    the dead leader scheduled fires once, from the new leader."""
    url = fresh_database(pg, "leader_dies")
    cfg_a, cfg_b, world = two_configs(tmp_path, url, ttl="8s")
    with ExitStack() as stack:
        a = stack.enter_context(running(cfg_a))
        b = stack.enter_context(running(cfg_b))
        assert leaders(a, b) == [a]
        post(a, "web3", "ttl-1")
        wait_for(lambda: world.isolated.get("web3"))
        wait_for(lambda: "ttl:" in " ".join(a.scheduler.job_ids()))
        # what SIGKILL does to A: its connections close (the server ends the lock session), nothing runs on
        a.leadership.halt()
        a.scheduler.sched.shutdown(wait=False)
        died = time.monotonic()
        wait_for(lambda: b.leadership.is_leader, timeout=10)
        assert time.monotonic() - died <= 10
        assert events(cfg_b, "daemon.leader_acquired")
        wait_for(lambda: world.isolated.get("web3") is False, timeout=20)
        time.sleep(2)
        assert [r.kind for r in journal(b, "web3")] == ["apply", "undo"]


def test_lock_session_killed_leader_steps_down(pg, tmp_path: Path):
    """The leader's lock session is ended by the server (pg_terminate_backend: a dropped connection): the leader
    records daemon.leader_lost and pauses; within 10 s exactly one daemon leads."""
    url = fresh_database(pg, "leader_lost")
    cfg_a, cfg_b, _world = two_configs(tmp_path, url, ttl="1h")
    with ExitStack() as stack:
        a = stack.enter_context(running(cfg_a))
        b = stack.enter_context(running(cfg_b))
        assert leaders(a, b) == [a]
        with a.app.store.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": a.leadership.backend_pid}).scalar()
        wait_for(lambda: events(cfg_a, "daemon.leader_lost"), timeout=10)
        assert a.scheduler.sched.state != 1 or a.leadership.is_leader  # runs (STATE_RUNNING) only as leader
        wait_for(lambda: len(leaders(a, b)) == 1, timeout=10)
        for _ in range(10):  # never two at once while they settle
            assert len(leaders(a, b)) <= 1
            time.sleep(0.3)
        assert len(leaders(a, b)) == 1


def test_target_lock_spans_daemons(pg, tmp_path: Path):
    """What one daemon does to web1 (a TTL release as leader, a plan from an alert) waits for what the other is
    doing to web1: the runner's per-target lock holds across processes (failed before: in-process locks only,
    B entered while A held web1)."""
    import threading
    url = fresh_database(pg, "target_lock")
    cfg_a, cfg_b, _world = two_configs(tmp_path, url, ttl="1h")
    with ExitStack() as stack:
        a = stack.enter_context(running(cfg_a))
        b = stack.enter_context(running(cfg_b))
        entered = threading.Event()

        def b_takes_web1() -> None:
            with b.service.runner.locked(["web1"]):
                entered.set()

        # the second hold is nested: re-entrant within one daemon, as before
        with a.service.runner.locked(["web2", "web1"]), a.service.runner.locked(["web1"]):
            other = threading.Thread(target=b_takes_web1)
            other.start()
            assert not entered.wait(1.5), "B took web1 while A held it"
            with b.service.runner.locked(["web3"]):  # another target is free
                pass
        assert entered.wait(10)
        other.join(10)


def test_same_ttl_job_run_by_both_daemons_undoes_once(pg, tmp_path: Path):
    """The split-brain window: the old and the new leader run the same TTL release at once. The target's
    cross-daemon lock serialises them and the second finds the action undone (one undo, one ttl.skipped)."""
    import threading

    from agent import scheduler
    url = fresh_database(pg, "ttl_twice")
    cfg_a, cfg_b, world = two_configs(tmp_path, url, ttl="1h")
    with ExitStack() as stack:
        a = stack.enter_context(running(cfg_a))
        b = stack.enter_context(running(cfg_b))
        post(a, "web2", "ttl-1")
        wait_for(lambda: [r.state for r in journal(a, "web2")] == ["done"])
        [row] = journal(a, "web2")
        go = threading.Barrier(2)

        def release(daemon: Any) -> None:
            scheduler._bind(daemon.service)  # as on that daemon's scheduler thread
            go.wait()
            scheduler.release_action(row.id)

        threads = [threading.Thread(target=release, args=(d,)) for d in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [r.kind for r in journal(a, "web2")] == ["apply", "undo"]
        assert len(events(cfg_a, "ttl.skipped") + events(cfg_b, "ttl.skipped")) == 1
        assert world.isolated["web2"] is False


def _lock_holders(url: str) -> int:
    """Sessions holding the leadership lock (a bigint key is classid = high, objid = low 32 bits, objsubid 1:
    https://www.postgresql.org/docs/current/view-pg-locks.html)."""
    from agent.store import Store
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid = :hi AND objid = :lo"),
                {"hi": LEADER_LOCK_KEY >> 32, "lo": LEADER_LOCK_KEY & 0xFFFFFFFF}).scalar_one())
    finally:
        store.close()


def test_two_daemon_processes_sigkill_leader(pg, tmp_path: Path):
    """Two ``agent daemon`` processes: A leads, B follows (one lock holder); SIGKILL A → B leads within 10 s."""
    url = fresh_database(pg, "leader_procs")
    cfg_a, cfg_b, _world = two_configs(tmp_path, url, ttl="1h")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "AGENT_NO_WARM": "1", "PYTHONPATH": str(repo)}
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cfg: Path) -> tuple[subprocess.Popen[bytes], str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with open(cfg.parent / "daemon.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "daemon", "-c", str(cfg), "--listen",
                                     f"127.0.0.1:{port}"], env=env, cwd=cfg.parent, stdout=log,
                                    stderr=subprocess.STDOUT)
        procs.append(proc)

        def up() -> bool:
            assert proc.poll() is None, (cfg.parent / "daemon.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 30)
        return proc, f"http://127.0.0.1:{port}"

    try:
        a, _ = spawn(cfg_a)
        wait_for(lambda: events(cfg_a, "daemon.leader_acquired"))
        _, url_b = spawn(cfg_b)
        time.sleep(3)  # more than one poll of B's
        assert events(cfg_b, "daemon.leader_acquired") == [] and _lock_holders(url) == 1
        assert httpx.get(url_b + "/healthz").json()["scheduler"] == "follower"
        a.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        a.wait(10)
        wait_for(lambda: events(cfg_b, "daemon.leader_acquired"), timeout=10, interval=0.1)
        assert time.monotonic() - killed <= 10
        assert _lock_holders(url) == 1
        assert httpx.get(url_b + "/healthz").json()["scheduler"] == "leader"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def test_lost_claim_race_keeps_the_writers_transaction_on_postgres(pg, monkeypatch):
    """The claim's INSERT runs in a savepoint on PostgreSQL, so losing the race does not abort the writer's
    group commit (tests/unit/test_intake_dedupe.py runs the same on SQLite)."""
    from tests.unit.test_intake_dedupe import lost_claim_race_keeps_the_transaction
    lost_claim_race_keeps_the_transaction(fresh_database(pg, "claim_race"), monkeypatch)
