"""Issue 19's acceptance as a test: an outbreak of 100 hosts over 3 sites, contained by one command while a worker
of each site and the leader daemon die by SIGKILL.

Everything is real and private: ``agent lab up --hosts 100 --sites 3`` (h01-h34 at site1 on 10.77.17.0/24,
h35-h67 at site2, h68-h100 at site3; each site segment reachable only from its worker host ``wkK``, whose leg
there is a management address), PostgreSQL and RabbitMQ on the management host, two ``agent worker`` processes
per site on its worker host, two ``agent daemon`` processes and the central CLI on mgmt — with **no credentials
for the fleet** in their inventory (mgmt cannot even reach it). The inventory tags the 100 hosts ``outbreak``.

1. Before anything: from ``obsK`` (a bare neighbour on site K's segment, not a management address) every host's
   echo port and sshd answer — the probe can see them.
2. One ``agent contain --tag outbreak --ttl 75s`` from mgmt. While it runs: site1's first worker SIGKILLs itself
   right after its first apply reached a host, before journaling it (failpoint ``after-apply``: the worst moment);
   the test SIGKILLs site2's and site3's first workers once a quarter of their site is done, while each holds
   unfinished actions; the test SIGKILLs the leader daemon once half of the outbreak is done. Each kill is
   proven mid-run: right after it, the journal shows the site's unfinished actions, among them the dead worker's.
3. The contain ends ``done``. Every host isolated exactly once: one isolate action per host, done, run by a
   worker of its site (never the central), one ``applying`` transition each; the dead workers' unfinished actions
   were taken over by the site's other worker; each host's nft table == the journal's verified rules == the
   rules the management addresses call for.
4. Verified by probe, from outside: from ``obsK`` every host's ports time out (dropped, not refused: nothing
   reached it) while the site worker's management SSH still gets in.
5. The surviving daemon leads; its scheduler fires every TTL release through the workers: one undo per host,
   done, created after the leader died, run by a worker of the site, chained by the surviving daemon. Each host's
   table is gone and the probe from ``obsK`` reaches every port again.
6. The deployment's one audit chain (workers queue their records through PostgreSQL; the central CLI and the
   daemons share its directory) verifies with the signing key, the fingerprint counsel received beforehand and
   the signed head anchored after the contain, and holds each host's isolate and release as its worker recorded
   them, each queued record once.

Lab, brokers and processes are private and stopped by PID; the lab prefix is claimed (``cob``…) and torn down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from agent.lab import Lab, labconfig
from agent.lab.topology import MGMT_ADDRESS, fleet_names, observer_host, site_names, worker_host
from agent.store import ACTIVE_STATES, Action, Transition, utcnow
from tests.integration.cli.test_contain_cli import AGENT
from tests.integration.conftest import _skip_unless_lab_possible, claim_prefix
from tests.integration.pg_server import private_postgres_server
from tests.integration.rabbit_server import private_rabbitmq

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOSTS, SITES = 100, 3
FLEET = fleet_names(HOSTS, SITES)
TAG = "outbreak"
TTL = 60  # s from each intent: the contain, its checks and the probe must fit before the first release
LEASE = 5  # s: a dead worker's actions are taken over within ~1.5 leases
WAIT = 120  # s the central waits for a site to settle an action (then: in doubt, and the test fails)
SLOTS = 6  # actions at once per worker
ECHO, SSH = 8080, 22


@dataclass
class Outbreak:
    lab: Lab
    root: Path
    url: str
    broker: str
    signing_key: Path
    fingerprint: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sites(self) -> dict[str, list[str]]:
        where = self.lab.site_of()
        return {s: [h for h in FLEET if where[h] == s] for s in site_names(SITES)}

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "AGENT_BROKER_PASSWORD": "guest", "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
        env.pop("AGENT_FAILPOINTS", None)
        env.update(extra)
        return env

    def config(self, name: str, *, central: bool, extra: str = "") -> Path:
        """agent.yaml + inventory.yaml of one process; the central ones without fleet creds, sharing the
        deployment's one audit chain (the central's directory, the signing key); a worker with neither (its
        records go to that chain through PostgreSQL; `agent worker` refuses a key)."""
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        inv = labconfig.inventory(self.lab.state_dir, None, FLEET, self.lab.site_of())
        for host in FLEET:
            inv["hosts"][host]["tags"] = [TAG]
            if central:
                del inv["hosts"][host]["credentials"]
        (folder / "inventory.yaml").write_text(labconfig.to_yaml(inv))
        settings = labconfig.agent_settings(self.lab.repo, folder, self.lab.state_dir)
        settings.update(database=self.url, audit_dir=str(self.root / "central" / "audit"),
                        evidence_dir=str(folder / "evidence"), audit_signing_key=str(self.signing_key),
                        workers={"broker": self.broker, "broker_password": "env:AGENT_BROKER_PASSWORD",
                                 "sites": site_names(SITES), "lease": LEASE, "wait": WAIT})
        if not central:
            del settings["audit_signing_key"], settings["audit_dir"]
        (folder / "agent.yaml").write_text(labconfig.to_yaml(settings) + extra)
        return folder / "agent.yaml"

    def spawn(self, name: str, on: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(["ip", "netns", "exec", self.lab.hosts[on].namespace, AGENT, *argv], stdout=log,
                                stderr=subprocess.STDOUT, env=self.env(**env), stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        """SIGTERM (a clean stop: the audit logs get their closing checkpoint), SIGKILL after 60 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def query(self, fn: Callable[[Session], Any]) -> Any:
        with self.lab.enter("mgmt"):
            engine = create_engine(self.url, poolclass=NullPool)
            try:
                with Session(engine) as s:
                    return fn(s)
            finally:
                engine.dispose()

    def actions(self) -> list[Action]:
        return list(self.query(lambda s: list(s.scalars(select(Action).order_by(Action.seq)))))

    def transitions(self) -> list[Transition]:
        return list(self.query(lambda s: list(s.scalars(select(Transition).order_by(Transition.id)))))


@pytest.fixture
def outbreak(tmp_path: Path) -> Iterator[Outbreak]:
    _skip_unless_lab_possible()
    with ExitStack() as stack:
        prefix = stack.enter_context(claim_prefix("cob"))
        lab = Lab(prefix=prefix, fleet=HOSTS, sites=SITES)
        lab.up(rebuild=True)
        stack.callback(lab.down)
        mgmt = lab.hosts["mgmt"].namespace
        pg = stack.enter_context(private_postgres_server("outbreak-pg-", netns=mgmt, host=MGMT_ADDRESS))
        mq = stack.enter_context(private_rabbitmq(netns=mgmt, host=MGMT_ADDRESS))
        key = tmp_path / "audit-signing.key"
        made = subprocess.run([AGENT, "audit", "init-key", "--out", str(key)], capture_output=True, text=True,
                              timeout=60, check=True)
        [fingerprint] = [ln.split()[-1] for ln in made.stdout.splitlines() if ln.startswith("fingerprint:")]
        with lab.enter("mgmt"):  # a database of its own, as a deployment would have
            engine = create_engine(pg.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("CREATE DATABASE outbreak"))
            engine.dispose()
        ob = Outbreak(lab, tmp_path, pg.url.rsplit("/", 1)[0] + "/outbreak",
                      mq.url.replace("guest:guest@", "guest@"), key, fingerprint)
        stack.callback(ob.stop_all)
        yield ob


# -- what the hosts say --------------------------------------------------------------------------------------------
def tables(lab: Lab) -> dict[str, dict[str, Any] | None]:
    """Each fleet host's ``inet containment_agent`` table as nft_summary renders it (None: no table)."""
    return {h: t for h, (t, _) in host_states(lab).items()}


def host_states(lab: Lab) -> dict[str, tuple[dict[str, Any] | None, str]]:
    """Per fleet host: its containment table (nft_summary; None: none) and its dead-man timer record ("" when no
    timer is armed: one left armed would lift the isolation later, behind the journal's back)."""
    from connectors.ssh_linux.privilege import STATE_DIRS
    from connectors.ssh_linux.rules import TABLE, nft_summary
    script = (f"nft -j list table {TABLE} 2>/dev/null || echo null; echo '#'; "
              f"cat {STATE_DIRS['root']}/deadman 2>/dev/null; true")

    def read(host: str) -> tuple[dict[str, Any] | None, str]:
        listing, _, timer = lab.exec(host, ["sh", "-c", script], timeout=30).stdout.partition("\n#\n")
        table = json.loads(listing)
        return (nft_summary(table) if table else None), timer.strip()
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(FLEET, pool.map(read, FLEET), strict=True))


def probe(ob: Outbreak) -> dict[tuple[str, str, int], str]:
    """From outside each host: ``obsK`` (same segment, not management) to its echo port and sshd, and the site
    worker ``wkK`` (a management address) to its sshd. Value: "open", "timeout", "refused", …"""
    where = ob.lab.site_of()
    matrix = [(observer_host(where[h]), h, port) for h in FLEET for port in (ECHO, SSH)]
    matrix += [(worker_host(where[h]), h, SSH) for h in FLEET]
    res = ob.lab.probe(matrix, timeout=1.5)
    return {(c.src, c.dst, c.port): ("open" if c.state == "open" else c.detail) for c in res.checks}


def health(ob: Outbreak, url: str) -> str:
    """``leader`` / ``follower`` from a daemon's /healthz; "" while it does not answer."""
    import httpx
    try:
        with ob.lab.enter("mgmt"):
            return str(httpx.get(url + "/healthz", timeout=3).json()["scheduler"])
    except (httpx.HTTPError, ValueError, KeyError):
        return ""


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[1]) if owner.count(":") >= 1 else -1


def audit_records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(directory.glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


@dataclass
class Kill:
    """A SIGKILL and what the journal showed right after it: the site's unfinished actions, the dead one's."""

    at: datetime
    unfinished: list[str]
    held: list[str]


def kill_and_look(ob: Outbreak, proc: subprocess.Popen[bytes], site: str | None) -> Kill:
    if proc.poll() is None:
        proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    at = utcnow()
    acts = [r for r in ob.actions() if r.action == "isolate" and r.kind == "apply"]
    unfinished = [r.id for r in acts if (site is None or r.site == site) and r.state in ACTIVE_STATES]
    held = [r.id for r in acts if owner_pid(r.owner) == proc.pid and r.state in ACTIVE_STATES]
    return Kill(at, unfinished, held)


# -- the test ------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_outbreak_100_hosts_3_sites_workers_and_leader_killed(outbreak: Outbreak):
    ob = outbreak
    sites = ob.sites
    assert [len(sites[s]) for s in sites] == [34, 33, 33]

    # 1. the probe sees every host before containment
    before = probe(ob)
    assert set(before.values()) == {"open"}, {k: v for k, v in before.items() if v != "open"}

    # the deployment: 2 workers per site on its worker host (the first of each doomed), 2 daemons on mgmt
    workers: dict[str, list[subprocess.Popen[bytes]]] = {}
    for site in sites:
        workers[site] = [
            ob.spawn(f"{site}-{n}", worker_host(site),
                     ["worker", "--site", site, "--slots", str(SLOTS),
                      "--config", str(ob.config(f"{site}-{n}", central=False))],
                     **({"AGENT_FAILPOINTS": "after-apply"} if (site, n) == ("site1", "a") else {}))
            for n in ("a", "b")]
    daemons: dict[str, str] = {}
    for name in ("daemon-a", "daemon-b"):
        with ob.lab.enter("mgmt"), socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        cfg = ob.config(name, central=True, extra=f"daemon:\n  listen: \"127.0.0.1:{port}\"\n  sweep_interval: 2s\n")
        ob.spawn(name, "mgmt", ["daemon", "--config", str(cfg)])
        daemons[name] = f"http://127.0.0.1:{port}"
    for name, url in daemons.items():
        wait_for(lambda u=url, n=name: health(ob, u) != "" or ob.procs[n].poll() is not None, 90, f"{name} up")
        assert ob.procs[name].poll() is None, ob.log(name)
    wait_for(lambda: sorted(health(ob, u) for u in daemons.values()) == ["follower", "leader"], 30, "one leader")
    leader = next(n for n, u in daemons.items() if health(ob, u) == "leader")
    other = next(n for n in daemons if n != leader)

    # 2. one command; kills mid-run
    central = ob.config("central", central=True)
    started = time.monotonic()
    contain = subprocess.Popen(["ip", "netns", "exec", ob.lab.hosts["mgmt"].namespace, AGENT, "contain", "--tag",
                                TAG, "--yes", "--count", str(HOSTS), "--ttl", f"{TTL}s", "--json",
                                "-p", "capture_evidence=false", "--reason", "ransomware outbreak drill",
                                "--config", str(central)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ob.env(),
                               stdin=subprocess.DEVNULL)
    kills: dict[str, Kill] = {}
    try:
        deadline = time.monotonic() + 300
        while contain.poll() is None and time.monotonic() < deadline:
            acts = [r for r in ob.actions() if r.action == "isolate" and r.kind == "apply"]
            done = {s: sum(1 for r in acts if r.site == s and r.state == "done") for s in sites}
            for site, (doomed, _) in workers.items():
                if site in kills:
                    continue
                held = [r for r in acts if owner_pid(r.owner) == doomed.pid and r.state in ACTIVE_STATES]
                by_failpoint = site == "site1" and doomed.poll() is not None
                by_test = site != "site1" and done[site] >= len(sites[site]) // 4 and bool(held)
                if by_failpoint or by_test:
                    kills[site] = kill_and_look(ob, doomed, site)
            if leader not in kills and sum(done.values()) >= HOSTS // 2:
                kills[leader] = kill_and_look(ob, ob.procs[leader], None)
            time.sleep(0.2)
        out, err = contain.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if contain.poll() is None:
            contain.kill()
            contain.communicate(timeout=30)
    took = time.monotonic() - started
    assert contain.returncode == 0, (contain.returncode, out[-3000:], err[-3000:])
    assert json.loads(out)["status"] == "done"
    print(f"\ncontain {HOSTS} hosts over {SITES} sites: {took:.1f} s")

    # every kill landed mid-run: the site still had unfinished actions, the dead worker some of them
    assert sorted(kills) == sorted([*sites, leader]), (sorted(kills), {s: ob.log(f"{s}-a") for s in sites})
    for site in sites:
        k = kills[site]
        assert k.held and set(k.held) <= set(k.unfinished), (site, k)
    assert kills[leader].unfinished, "the leader daemon died after the contain had finished"
    print(f"lab up {ob.lab.timings['up']:.1f} s; " + "; ".join(
        f"{who} SIGKILLed with {len(k.unfinished)} unfinished ({len(k.held)} its own)" for who, k in kills.items()))

    # 3. every host isolated exactly once, by a worker of its site; the dead workers' actions taken over
    acts = [r for r in ob.actions() if r.action == "isolate"]
    applies = [r for r in acts if r.kind == "apply"]
    assert sorted(r.target for r in applies) == sorted(FLEET) and not [r for r in acts if r.kind == "undo"]
    assert {r.target: r.state for r in applies} == dict.fromkeys(FLEET, "done")
    trans = ob.transitions()
    entered: dict[str, int] = {}
    for t in trans:
        if t.to_state == "applying" and t.from_state != "applying":
            entered[t.action_id] = entered.get(t.action_id, 0) + 1
    assert {r.target: entered.get(r.id, 0) for r in applies} == dict.fromkeys(FLEET, 1)
    where = ob.lab.site_of()
    for r in applies:
        assert r.site == where[r.target], (r.target, r.site)
        assert owner_pid(r.owner) in {p.pid for p in workers[r.site]}, (r.target, r.owner)
    taken = {t.action_id for t in trans if "not re-applied" in t.detail or "reconciled" in t.detail}
    print(f"taken over from dead workers and reconciled from the host: {len(taken)}")
    by_id = {r.id: r for r in applies}
    for site in sites:
        survivor = workers[site][1].pid
        assert all(owner_pid(by_id[i].owner) == survivor for i in kills[site].held), site
    from connectors.ssh_linux.rules import nft_expected
    from connectors.ssh_linux.validation import parse_management
    mgmt = parse_management([MGMT_ADDRESS, *(f"10.77.{16 + k}.1" for k in range(1, SITES + 1))])
    expected = nft_expected(mgmt, SSH)
    on_hosts = host_states(ob.lab)
    assert {h: timer for h, (_, timer) in on_hosts.items() if timer} == {}, "dead-man timers left armed"
    for r in applies:
        seen = on_hosts[r.target][0]
        assert seen is not None, f"{r.target}: no containment table, but the journal says done"
        assert "deadman" not in r.verification["observed"], (r.target, r.verification)
        rules = {c: v["rules"] for c, v in seen.items()}
        assert rules == r.verification["observed"]["rules"] == expected, (r.target, rules, r.verification)
        assert {c: v["policy"] for c, v in seen.items()} == dict.fromkeys(("input", "output", "forward"), "drop")

    # 4. verified by probe from outside: ports dropped from the segment, management SSH still in
    during = probe(ob)
    where_obs = {h: observer_host(where[h]) for h in FLEET}
    assert {(h, p): during[(where_obs[h], h, p)] for h in FLEET for p in (ECHO, SSH)} == \
        {(h, p): "timeout" for h in FLEET for p in (ECHO, SSH)}
    assert {h: during[(worker_host(where[h]), h, SSH)] for h in FLEET} == dict.fromkeys(FLEET, "open")
    assert not [r for r in ob.actions() if r.kind == "undo"], \
        f"a TTL release fired before the probe ({time.monotonic() - started:.0f} s > TTL {TTL} s): raise TTL"
    anchor = subprocess.run([AGENT, "audit", "anchor", "--dir", str(ob.root / "central" / "audit"), "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert anchor.returncode == 0, anchor.stdout + anchor.stderr
    (ob.root / "central-anchor.json").write_text(anchor.stdout)

    # 5. the surviving daemon leads and fires every TTL release through the workers
    wait_for(lambda: health(ob, daemons[other]) == "leader", 15, f"{other} to lead after {leader} died")
    wait_for(lambda: not any(tables(ob.lab).values()), TTL + 120, "every TTL release", every=3)
    wait_for(lambda: {r.state for r in ob.actions() if r.kind == "undo"} == {"done"}, 60, "the undos to settle")
    print(f"released by TTL: {time.monotonic() - started:.1f} s after the contain started")
    undos = [r for r in ob.actions() if r.action == "isolate" and r.kind == "undo"]
    assert sorted(r.target for r in undos) == sorted(FLEET)
    assert {r.undo_of for r in undos} == {r.id for r in applies}
    for r in undos:
        assert r.state == "done" and r.site == where[r.target] and r.created_at > kills[leader].at, r.target
        assert owner_pid(r.owner) in {p.pid for p in workers[r.site]}, (r.target, r.owner)
    def released() -> set[str]:  # the workers' records of the releases, appended by the surviving daemon
        return {r["action_id"] for r in audit_records(ob.root / "central" / "audit") if r["event"] == "action.undone"}
    wait_for(lambda: {r.id for r in undos} <= released(), 30, "the surviving daemon to chain the TTL releases")
    after = probe(ob)
    assert set(after.values()) == {"open"}, {k: v for k, v in after.items() if v != "open"}

    # 6. the deployment's one audit chain (docs/workers.md) verifies: signing key, the fingerprint received
    # beforehand, the signed head anchored after the contain; it holds every host's isolate and release as the
    # site worker recorded them, each queued record once
    ob.stop_all()
    pub = ob.signing_key.with_name(ob.signing_key.name + ".pub")
    logs = sorted({p.parent.parent for p in ob.root.glob("*/audit/*.jsonl")})
    assert [p.name for p in logs] == ["central"]
    res = subprocess.run([AGENT, "audit", "verify", "--dir", str(ob.root / "central" / "audit"), "--public-key",
                          str(pub), "--expect-key", ob.fingerprint, "--anchor", str(ob.root / "central-anchor.json")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    chain = audit_records(ob.root / "central" / "audit")
    ids = [r["outbox_id"] for r in chain if "outbox_id" in r]
    assert len(ids) == len(set(ids)), "a worker's record was chained twice"
    by_worker = {(r["action_id"], r["worker"]) for r in chain if r["event"] in ("action.done", "action.undone")
                 and r.get("worker")}
    assert {(r.id, r.owner) for r in [*applies, *undos]} <= by_worker
